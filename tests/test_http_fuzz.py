"""Property-based fuzzing of the HTTP API from its own OpenAPI spec: no input gives a 5xx,
and every answer that is not a success has the API's error shape. Each generated request
is sent with the all-scopes token, a token with the rank scope only, an unknown token and
none."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from engine import Engine  # noqa: E402
from engine.serve import tokens  # noqa: E402
from engine.serve.app import create_app  # noqa: E402

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RANK_ONLY: dict[str, str] = {}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    eng = Engine(folder / "d", policy="lints", item_features=2, context_features=["mobile"],
                 seed=0)
    token_file = str(folder / "tokens.yaml")
    RANK_ONLY["Authorization"] = f"Bearer {tokens.add(token_file, 'ranker', ['rank'])}"
    application = create_app(eng, tokens.Tokens(TOKEN, token_file), max_body_bytes=50_000,
                             max_candidates=50, access_log="off")
    yield application
    eng.close()


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    for headers in (AUTH, RANK_ONLY, {}, {"Authorization": "Bearer x"}):
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.path, case.body, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"field", "reason"}, response.text
