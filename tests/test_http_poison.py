"""Whatever a client sends, `loopwise serve` answers without a 5xx and its data directory
stays usable: a real server process on loopback is sent arbitrary strings (lone
surrogates, NUL, BOM, long ones) and numbers (NaN, infinities, huge, tiny, milliseconds)
in every field, then killed (SIGKILL) and started again on the same directory, which must
open and hold every record it acknowledged."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

TOKEN = "poison-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
NOW = time.time()

ODD = ["\ud83d", "\udc00", "\x00", "\ufeff", "é", "😀", "a", "/", "%", "\x1f", '"', "\\"]
strings = st.one_of(
    st.text(st.sampled_from(ODD), min_size=0, max_size=4),
    st.text(max_size=8),
    st.text(st.sampled_from(["x", "\ud83d"]), min_size=250, max_size=270),
    st.just("u1"), st.just("jazz"),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([1e308, -1e308, 5e-324, 0, NOW, NOW * 1000, NOW + 3 * 86_400, 946_684_799,
                     2e6, -2e6, 1e6]),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``loopwise serve`` in a process of its own."""

    def __init__(self, data_dir, config):
        self.data_dir, self.config = data_dir, config
        self.proc = None

    def start(self):
        port = _free_port()
        env = {**os.environ, "LOOPWISE_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "experiments.cli", "serve", "--data-dir", str(self.data_dir),
             "--port", str(port), "--config", str(self.config)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH,
                                   timeout=30)
        deadline = time.time() + 90
        while True:
            try:
                if self.client.get("/healthz").status_code in (200, 503):
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode(errors="replace")[-3000:])
            if time.time() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)

    def kill(self):
        self.client.close()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc.stderr.close()

    def post(self, path, body) -> httpx.Response:
        # json.dumps escapes a lone surrogate as \\ud83d and writes NaN/Infinity tokens:
        # what a careless client sends, byte for byte
        return self.client.post(path, content=json.dumps(body).encode())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("poison")
    config = root / "serve.yaml"
    config.write_text("engine:\n  policy: lints\n  item_features: 2\n"
                      "  context_features: [mobile]\n")
    s = Served(root / "data", config)
    s.start()
    s.acked = {"events": [], "joined": [], "pending": []}
    yield s
    if s.proc.poll() is None:
        s.kill()


EVENT = {"user_id": "u1", "type": "click", "ts": NOW - 5, "item_id": "i1", "value": 1.0,
         "topic": "jazz", "tag": "new", "text": "jazz piano", "attr_key": "region",
         "attr_value": "eu", "event_id": "e"}
RANK = {"user_id": "u1", "id": "i1", "topic": "jazz", "tag": "new", "feature": 0.5,
        "ctx_key": "mobile", "ctx_value": 1.0, "event_id": None, "excluded": "zz",
        "reward": 1.0}
NUMERIC = {"ts", "value", "feature", "ctx_value", "reward"}


def _one_poisoned(defaults):
    """The defaults with one field replaced by an arbitrary string or number (a value of
    the other kind too, now and then)."""
    def build(key, text, number, swap):
        value = (number if key in NUMERIC else text) if not swap else \
            (text if key in NUMERIC else number)
        return {**defaults, key: value}
    return st.builds(build, st.sampled_from(sorted(defaults)), strings, numbers,
                     st.integers(0, 9).map(lambda i: i == 0))


def _event(user_id, type, ts, item_id, value, topic, tag, text, attr_key, attr_value,
           event_id):
    ev = {"user_id": user_id, "type": type, "ts": ts, "item_id": item_id,
          "topics": [topic], "tags": [tag], "attributes": {attr_key: attr_value},
          "event_id": event_id}
    if type in ("rate", "reward"):
        ev["value"] = value
    if type == "search":
        ev["text"] = text
    return ev


event_fields = st.one_of(
    _one_poisoned(EVENT),
    _one_poisoned(EVENT).map(lambda e: {**e, "type": "reward"}),
    _one_poisoned(EVENT).map(lambda e: {**e, "type": "search"}),
)
rank_fields = _one_poisoned(RANK)


def _reward_path(decision: str) -> str:
    return f"/v1/events/{quote(decision, safe='')}/reward"


def _checked(r: httpx.Response) -> httpx.Response:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    body = r.json()  # every answer is JSON
    if r.status_code >= 400:
        assert set(body) == {"error"} and {"field", "reason"} <= set(body["error"]), body
    return r


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ev=event_fields, rk=rank_fields)
def test_arbitrary_strings_and_numbers_get_no_5xx(served, ev, rk):
    ev = dict(ev, event_id=f"{ev['event_id']}|{len(served.acked['events'])}")
    fields = _event(**ev)
    good = {"user_id": "u-good", "type": "click", "ts": NOW - 5, "item_id": "i1",
            "topics": ["jazz"], "event_id": f"good-{len(served.acked['events'])}"}
    r = _checked(served.post("/v1/events", {"events": [good, fields]}))
    if r.status_code == 200:
        served.acked["events"] += [good, fields]
    actions = [{"id": rk["id"], "topics": [rk["topic"]], "tags": [rk["tag"]],
                "features": [rk["feature"], 0.5]},
               {"id": "plain", "topics": ["rock"], "features": [0.0, 1.0]}]
    body = {"user_id": rk["user_id"], "actions": actions,
            "contextFeatures": [{rk["ctx_key"]: rk["ctx_value"]}],
            "excludedActions": [rk["excluded"]]}
    if rk["event_id"] is not None:
        body["eventId"] = rk["event_id"]
    r = _checked(served.post("/v1/rank", body))
    if r.status_code != 200:
        return
    decision = r.json()["eventId"]
    r = _checked(served.post(_reward_path(decision), {"value": rk["reward"]}))
    if r.status_code == 200 and r.json()["status"] == "joined":
        served.acked["joined"].append(decision)
    else:
        served.acked["pending"].append(decision)


def test_the_reported_bodies_are_refused_naming_the_field(served):
    """The requests of the report that found these defects, byte for byte."""
    r = served.client.post("/v1/rank", content=b'{"user_id":"u1","eventId":"d1","actions":'
                                                b'[{"id":"q","topics":["\\ud83d"]}]}')
    assert r.status_code == 422 and r.json()["error"]["field"].endswith("topics[0]"), r.text
    assert "valid Unicode" in r.json()["error"]["reason"]
    for ev, field, reason in [
            ({"attributes": {"region": "\ud83d"}}, "events[0].attributes.region", "Unicode"),
            ({"tags": ["\ud83d"]}, "events[0].tags[0]", "Unicode"),
            ({"user_id": "\ud83d"}, "events[0].user_id", "Unicode"),
            ({"item_id": "\ud83d"}, "events[0].item_id", "Unicode"),
            ({"event_id": "\ud83d"}, "events[0].event_id", "Unicode"),
            ({"topics": ["\ud83d"]}, "events[0].topics[0]", "Unicode"),
            ({"ts": 1700000000000}, "events[0].ts", "looks like milliseconds"),
            ({"ts": 1e308}, "events[0].ts", "a day after"),
            ({"type": "reward", "value": 1e308}, "events[0].value", "reward range")]:
        body = {"events": [{"user_id": "u1", "type": "click", "ts": NOW - 1, **ev}]}
        r = _checked(served.post("/v1/events", body))
        assert r.status_code == 422 and r.json()["error"]["field"] == field, (ev, r.text)
        assert reason in r.json()["error"]["reason"]
    r = _checked(served.post("/v1/rank", {"user_id": "u1", "actions": [{"id": "a"}],
                                          "contextFeatures": [{"\ud83d": 1}]}))
    assert r.status_code == 422
    d = _checked(served.post("/v1/rank", {"user_id": "u1", "actions": [{"id": "a"},
                                                                        {"id": "b"}]})).json()
    assert len(d["eventId"]) == 44  # a time prefix, then 128 random bits
    r = _checked(served.post(_reward_path(d["eventId"]), {"value": 1e308}))
    assert r.status_code == 422 and r.json()["error"]["field"] == "value"
    assert _checked(served.post(_reward_path(d["eventId"]), {"value": 1.0})).json()[
        "status"] == "joined"
    assert _checked(served.post("/v1/events", {"events": [
        {"user_id": "u1", "type": "click", "ts": NOW - 1}]})).status_code == 200
    assert served.client.get("/healthz").status_code == 200


def test_the_directory_reopens_after_a_kill_with_every_acknowledged_record(served):
    acked = served.acked
    assert len(acked["events"]) > 20 and len(acked["joined"]) > 5  # the fuzzing reached in
    served.kill()
    served.start()
    health = served.client.get("/healthz")
    assert health.status_code == 200, health.text
    events = acked["events"]
    for i in range(0, len(events), 100):  # every acknowledged event is stored: all duplicates
        r = _checked(served.post("/v1/events", {"events": events[i:i + 100]}))
        assert r.json() == {"accepted": 0, "duplicates": len(events[i:i + 100])}
    for decision in acked["joined"]:  # every joined reward is there: a repeat is a duplicate
        r = _checked(served.post(_reward_path(decision), {"value": 1.0}))
        assert r.json()["status"] == "duplicate", decision
    for decision in acked["pending"]:  # and every decision: it still takes its reward
        r = _checked(served.post(_reward_path(decision), {"value": 1.0}))
        assert r.json()["status"] == "joined", decision
    served.kill()
