"""The HTTP face of privacy: GET /v1/aggregates (scope, figures, budget refusal, bad input)
and the erasure record in the access log (pseudonym, never the id)."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("uvicorn")

from filebytes import files_holding  # noqa: E402

from engine.privacy.pseudonym import Pseudonyms  # noqa: E402
from tests.test_http import Server  # noqa: E402


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "keys" / "k"
    path.parent.mkdir()
    path.write_bytes(b"0123456789abcdef-http-test-key")
    return path


@pytest.fixture
def server(tmp_path, key):
    s = Server(tmp_path / "d", policy="lints", seed=0, clock=lambda: 1000.0,
               dp_total_epsilon=1.0, pseudonym_key_file=str(key))
    s.engine.ingest([{"user_id": f"person-{i}", "type": "click", "ts": 900.0 + i,
                      "topics": ["jazz"]} for i in range(20)])
    yield s
    s.stop()


def test_aggregates_release_figures_within_the_budget(server):
    r = server.client.get("/v1/aggregates", params={"epsilon": "0.6", "topics": "jazz,rock"})
    assert r.status_code == 200, r.text
    body = r.json()
    click = body["event_types"]["click"]["count"]
    assert click["ci"][0] <= click["value"] <= click["ci"][1] and click["scale"] > 0
    assert set(body["topics"]) == {"jazz", "rock"} and body["budget"]["left"] == pytest.approx(0.4)
    r = server.client.get("/v1/aggregates", params={"epsilon": "0.5"})
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "epsilon" and "0.4" in r.json()["error"]["reason"]


@pytest.mark.parametrize("params, field", [({}, "epsilon"), ({"epsilon": "x"}, "epsilon"),
                                           ({"epsilon": "-1"}, "epsilon"),
                                           ({"epsilon": "nan"}, "epsilon"),
                                           ({"epsilon": "0.1", "alpha": "2"}, "alpha")])
def test_aggregates_bad_input_names_the_field(server, params, field):
    r = server.client.get("/v1/aggregates", params=params)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    assert server.engine.dp_release(1.0)["budget"]["spent"] == 1.0  # nothing was charged


def test_aggregates_need_the_read_scope(server):
    r = server.client.get("/v1/aggregates", params={"epsilon": "0.1"},
                          headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    spec = server.client.get("/openapi.json").json()
    assert spec["paths"]["/v1/aggregates"]["get"]["x-scope"] == "read"


def test_erasure_is_in_the_access_log_by_pseudonym(server, key, caplog):
    with caplog.at_level(logging.INFO, logger="loopwise.access"):
        r = server.client.delete("/v1/profiles/person-3")
    assert r.status_code == 200 and r.json()["deleted"]["events"] == 1
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "loopwise.access"]
    pseudo = Pseudonyms(key.read_bytes().strip())("person-3")
    assert any(line.startswith(f"erasure user={pseudo} profile=1 events=1") for line in lines)
    assert not any("person-3" in line for line in lines)


def test_http_scenario_stores_no_raw_id_or_text(tmp_path, key, caplog):
    """Events with search text, rank, reward, profile and erasure over HTTP with a key set:
    no byte of the data directory and no log line holds a raw id or the text."""
    from tests.test_http import actions

    users = [f"http-person-{i}-RAW" for i in range(4)]
    text = "Looking for Jazz records near Main Street"
    caplog.set_level(logging.DEBUG)
    s = Server(tmp_path / "d", policy="lints", seed=0, clock=lambda: 1000.0,
               pseudonym_key_file=str(key))
    try:
        c = s.client
        r = c.post("/v1/events", json={"events": [
            {"user_id": u, "type": "search", "ts": 990.0, "text": text} for u in users]})
        assert r.status_code == 200, r.text
        for u in users:
            r = c.post("/v1/rank", json={"user_id": u, "actions": actions()})
            assert r.status_code == 200, r.text
            assert c.post(f"/v1/events/{r.json()['eventId']}/reward",
                          json={"value": 1.0}).status_code == 200
        assert c.get(f"/v1/profiles/{users[0]}").json()["user_id"] == users[0]
        assert c.delete(f"/v1/profiles/{users[1]}").json()["deleted"]["profile"] == 1
    finally:
        s.stop()
    needles = [u.encode() for u in users] + [text.encode()]
    assert files_holding(tmp_path / "d", needles) == {}
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert server_side and not [r for r in server_side
                                if any(u in r.getMessage() for u in users)]


def test_console_user_routes_take_application_ids_and_never_list_them(server):
    from tests.test_http import actions

    c = server.client
    c.post("/v1/events", json={"events": [{"user_id": "alice-app", "type": "click",
                                           "ts": 990.0, "topics": ["jazz"]}]})
    did = c.post("/v1/rank", json={"user_id": "alice-app", "actions": actions()}).json()["eventId"]
    assert c.get("/v1/users", params={"prefix": "alice-app"}).json() == {"users": ["alice-app"]}
    assert c.get("/v1/users", params={"prefix": "ali"}).json() == {"users": []}
    assert c.get("/v1/users", params={"prefix": "ps_"}).json() == {"users": []}
    got = c.get("/v1/users/alice-app/decisions").json()["decisions"]
    assert [d["decision_id"] for d in got] == [did] and got[0]["user_id"] == "alice-app"
    history = c.get("/v1/users/alice-app/history").json()
    assert history["times"] and "topic:jazz" in history["series"]
