"""Property-based fuzzing of the HTTP API from its own OpenAPI spec: no input gives a 5xx."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from engine import Engine  # noqa: E402
from engine.serve.app import create_app  # noqa: E402

TOKEN = "fuzz-token"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    eng = Engine(tmp_path_factory.mktemp("fuzz") / "d", policy="lints", item_features=2,
                 context_features=["mobile"], seed=0)
    application = create_app(eng, TOKEN, max_body_bytes=50_000, max_candidates=50)
    yield application
    eng.close()


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}, {"Authorization": "Bearer x"}):
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.path, case.body, response.text)
