"""Property-based fuzzing of the Personalizer routes (``/personalizer/v1.0/...`` and
``/v1/apprentice``) from the app's own OpenAPI spec: no input gives a 5xx and every
refusal has the API's error shape, sent with the token as ``Ocp-Apim-Subscription-Key``,
as a bearer token, with a rank-only token and with none. Plus hand-written JSON feature
values that a spec-driven generator rarely makes (deep nesting, huge numbers, odd types)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from engine import Engine  # noqa: E402
from engine.serve import tokens  # noqa: E402
from engine.serve.app import create_app  # noqa: E402

TOKEN = "fuzz-token"
HEADERS = [{"Ocp-Apim-Subscription-Key": TOKEN}, {"Authorization": f"Bearer {TOKEN}"}, {},
           {"Ocp-Apim-Subscription-Key": "wrong"}]


@pytest.fixture(scope="module")
def json_app(tmp_path_factory):
    """An app of its own: the schemathesis run above ends with the app's lifespan shutdown,
    which closes its engine."""
    eng = Engine(tmp_path_factory.mktemp("pjson") / "d", policy="lints", item_features=16,
                 seed=0)
    yield create_app(eng, TOKEN, access_log="off")
    eng.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pfuzz")
    eng = Engine(folder / "d", policy="lints", item_features=16, seed=0)
    token_file = str(folder / "tokens.yaml")
    HEADERS.append({"Ocp-Apim-Subscription-Key": tokens.add(token_file, "ranker", ["rank"])})
    application = create_app(eng, tokens.Tokens(TOKEN, token_file), max_body_bytes=50_000,
                             max_candidates=50, access_log="off")
    yield application
    eng.close()


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi(
        "/openapi.json", app, headers={"Authorization": f"Bearer {TOKEN}"}
    ).include(path_regex=r"^/(personalizer/|v1/apprentice)")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    for headers in HEADERS:
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.path, case.body, response.text)
        if response.status_code >= 400:
            assert set(response.json()["error"]) == {"field", "reason"}, response.text


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=30)


@given(context=st.lists(st.dictionaries(st.text(max_size=8), _json, max_size=4), max_size=3),
       features=st.lists(st.dictionaries(st.text(max_size=8), _json, max_size=4), max_size=3))
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_json_features(json_app, context, features):
    # no `with`: leaving it would close the engine (lifespan shutdown)
    client = TestClient(json_app, raise_server_exceptions=False)
    r = client.post("/personalizer/v1.0/rank", headers=HEADERS[0], json={
        "contextFeatures": context,
        "actions": [{"id": "a", "features": features}, {"id": "b", "features": []}]})
    assert r.status_code in (201, 422), r.text
    if r.status_code == 422:
        assert r.json()["error"]["field"].startswith(("contextFeatures", "actions")), r.text
