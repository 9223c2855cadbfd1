"""The HTTP service on a real uvicorn server on loopback, talked to with httpx."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

uvicorn = pytest.importorskip("uvicorn")

from engine import Engine  # noqa: E402
from engine.serve.app import create_app  # noqa: E402
from experiments.serve import uvicorn_config  # noqa: E402

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a background thread; ``stop()`` is a graceful shutdown (lifespan runs)."""

    def __init__(self, data_dir, token=TOKEN, app_kwargs=None, **engine_kwargs):
        self.port = free_port()
        eng = self.engine = Engine(data_dir, item_features=2, context_features=["mobile"],
                                   **engine_kwargs)
        app = create_app(eng, token, max_body_bytes=20_000, max_candidates=50,
                         **(app_kwargs or {}))
        self.server = uvicorn.Server(uvicorn_config(app, {"port": self.port},
                                                    log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, headers=AUTH, timeout=10)

    def stop(self):
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "d", policy="lints", seed=0)
    yield s
    s.stop()


def actions(n=4):
    return [{"id": f"i{k}", "features": [float(k % 2), 0.5], "topics": [f"t{k}"]} for k in range(n)]


def test_rank_reward_events_profile(server):
    c = server.client
    r = c.post("/v1/events", json={"events": [
        {"user_id": "u1", "type": "click", "ts": 1700000000.0, "item_id": "i1", "topics": ["t1"],
         "event_id": "e1"}]})
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0}
    r = c.post("/v1/rank", json={"user_id": "u1", "actions": actions(),
                                 "contextFeatures": [{"mobile": 1}], "excludedActions": ["i3"]})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [a["id"] for a in body["ranking"]]
    assert sorted(ids) == ["i0", "i1", "i2"] and body["rewardActionId"] == ids[0]
    assert abs(sum(a["probability"] for a in body["ranking"]) - 1) < 1e-9
    event_id = body["eventId"]
    r = c.post(f"/v1/events/{event_id}/reward", json={"value": 1.0})
    assert r.json() == {"eventId": event_id, "status": "joined", "learned": True}
    assert c.post(f"/v1/events/{event_id}/reward", json={"value": 1.0}).json()["status"] == \
        "duplicate"
    assert c.post("/v1/events/nope/reward", json={"value": 1.0}).status_code == 404
    profile = c.get("/v1/profiles/u1").json()
    assert profile["engagement"]["events"] == 2
    assert c.delete("/v1/profiles/u1").json()["deleted"]["profile"] == 1
    assert c.get("/v1/profiles/u1").status_code == 404
    r = c.post("/v1/rank", json={"user_id": "u2", "actions": actions(), "eventId": "mine-1"})
    assert r.json()["eventId"] == "mine-1"
    assert c.post("/v1/rank", json={"user_id": "u2", "actions": actions(),
                                    "eventId": "mine-1"}).status_code == 422
    metrics = c.get("/metrics").text
    assert 'loopwise_decisions_total{variant="default"} 2.0' in metrics
    assert 'loopwise_rewards_total{status="joined"} 1.0' in metrics
    assert "loopwise_http_request_seconds_bucket" in metrics
    assert c.get("/v1/experiments/report").status_code == 404  # one variant


def test_auth(server):
    bare = httpx.Client(base_url=server.url, timeout=10)
    assert bare.get("/healthz").status_code == 200
    r = bare.post("/v1/rank", json={"user_id": "u", "actions": actions()})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = bare.get("/v1/profiles/u", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and TOKEN not in r.text  # an unknown token is no token
    assert bare.get("/metrics").status_code == 401
    bare.close()


def test_engine_errors_answer_409_and_are_counted(server, monkeypatch):
    from engine.errors import StoreError

    def fail(rows):
        raise StoreError("disk full (simulated)")

    monkeypatch.setattr(server.engine.store, "insert_decisions", fail)
    r = server.client.post("/v1/rank", json={"user_id": "u1", "actions": actions()})
    assert r.status_code == 409 and r.json()["error"]["field"] == "engine"
    assert "disk full" in r.text
    metrics = server.client.get("/metrics").text
    assert ('loopwise_http_requests_total{method="POST",route="/v1/rank",status="409"} 1.0'
            in metrics)


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"user_id": "", "actions": actions()}, 422, "user_id"),
    ({"user_id": "u", "actions": []}, 422, "actions"),
    ({"user_id": "u", "actions": actions(51)}, 422, "actions"),
    ({"user_id": "u", "actions": [{"id": "a", "features": [1.0]}]}, 422, "actions[0].features"),
    ({"user_id": "u", "actions": actions(), "contextFeatures": [{"hour": 3}]}, 422,
     "contextFeatures.hour"),
    ({"user_id": "u", "actions": actions(2), "excludedActions": ["i0", "i1"]}, 422,
     "excludedActions"),
    ({"user_id": "u", "actions": actions(), "colour": 1}, 422, "colour"),
])
def test_bad_rank_requests_name_the_field(server, body, status, field):
    r = server.client.post("/v1/rank", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field


def test_limits_and_malformed_bodies(server):
    c = server.client
    r = c.post("/v1/rank", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    big = {"events": [{"user_id": "u", "type": "view", "ts": 1700000000.0, "text": "x" * 1000}] * 30}
    assert c.post("/v1/events", json=big).status_code == 413

    def chunks():  # no Content-Length: the limit still holds
        yield b'{"events": ['
        for _ in range(40):
            yield b'{"user_id": "u", "type": "view", "ts": 1700000000.0, "text": "' + b"y" * 900 + b'"},'
        yield b'{"user_id": "u", "type": "view", "ts": 1700000000.0}]}'

    r = c.post("/v1/events", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    r = c.post("/v1/events", json={"events": [{"user_id": "u", "type": "view", "ts": 1700000000.0},
                                              {"user_id": "u", "type": "warp", "ts": 1700000000.0}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "events[1].type"
    assert c.get("/v1/profiles/u").status_code == 404  # nothing of the bad batch was stored
    r = c.post("/v1/events/x/reward", json={"value": "high"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "value"


def test_restart_keeps_profiles_and_pending_joins(tmp_path):
    s = Server(tmp_path / "d", policy="lints", seed=0)
    s.client.post("/v1/events", json={"events": [
        {"user_id": "u1", "type": "click", "ts": 1700000000.0, "topics": ["t1"]}]})
    event_id = s.client.post("/v1/rank", json={"user_id": "u1", "actions": actions()}).json()["eventId"]
    s.stop()  # graceful: flushes and snapshots
    s = Server(tmp_path / "d", policy="lints", seed=0)
    try:
        assert s.client.get("/v1/profiles/u1").status_code == 200
        r = s.client.post(f"/v1/events/{event_id}/reward", json={"value": 1.0})
        assert r.json()["status"] == "joined"
    finally:
        s.stop()


def test_experiment_report(tmp_path):
    variants = {"a": {"policy": "uniform"}, "b": {"policy": "uniform"}}
    s = Server(tmp_path / "d", variants=variants)
    try:
        for i in range(40):
            eid = s.client.post("/v1/rank", json={"user_id": f"u{i}", "actions": actions()}).json()
            s.client.post(f"/v1/events/{eid['eventId']}/reward", json={"value": float(i % 2)})
        report = s.client.get("/v1/experiments/report").json()
        assert set(report["variants"]) == {"a", "b"}
        assert sum(v["n"] for v in report["variants"].values()) == 40
    finally:
        s.stop()


def test_metrics_carry_the_stores_and_policies_gauges(server):
    import pickle

    eng = server.engine
    eng.learners["default"].policy._forget.detections = 2  # as if two drifts were found
    eng.store._commits.append([("events", [(10**6, "e", "\ud83d", 0, "click", 1.0, None, None, None)])])
    eng.store.flush()  # the bad record goes to quarantine
    text = server.client.get("/metrics").text
    assert "loopwise_quarantined_records 1.0" in text
    assert 'loopwise_policy_drift_detections{variant="default"} 2.0' in text
    assert 'loopwise_policy_version{variant="default"}' in text
    assert server.client.get("/healthz").json()["status"] == "degraded"
    assert pickle.dumps(eng.stats())  # stats stay plain data
