"""Personalizer's wire format on a real server on loopback: the official Python client
(``azure-cognitiveservices-personalizer``) unchanged, and Personalizer-shaped bodies written
from its public REST reference (single and multi-slot; nested, string, boolean and numeric
features; excluded actions; deferred activation)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

pytest.importorskip("uvicorn")

from test_http import TOKEN, Server  # noqa: E402

from engine.jsonfeatures import JsonFeatures  # noqa: E402

P = "/personalizer/v1.0"
KEY = {"Ocp-Apim-Subscription-Key": TOKEN}

# the body of Personalizer's REST reference example (Rank), lightly trimmed
RANK_BODY = {
    "contextFeatures": [
        {"user": {"id": "user-7", "profileType": "AnonymousUser", "latLong": [47.6, -122.1]}},
        {"environment": {"dayOfMonth": "28", "monthOfYear": "8", "weather": "Sunny"}},
        {"device": {"mobile": True, "windows": True}},
        {"recentActivity": {"itemsInCart": 3}},
    ],
    "actions": [
        {"id": "NewsArticle", "features": [{"type": "News"}]},
        {"id": "SportsArticle", "features": [{"type": "Sports"}]},
        {"id": "EntertainmentArticle", "features": [{"type": "Entertainment"}]},
        {"id": "GymAd", "features": [{"ad": {"vendor": "gym", "price": 9.5,
                                             "tags": ["fitness", "sale"]}}]},
    ],
    "excludedActions": ["SportsArticle"],
    "eventId": "75269AD0-BFEE-4598-8196-C57383D38E10",
    "deferActivation": False,
}


class Wide(Server):
    """The shared loopback server over an engine whose 64 item features are the hashed
    JSON features."""

    def __init__(self, data_dir, app_kwargs=None, **engine_kwargs):
        import test_http

        made = test_http.Engine
        test_http.Engine = _wide(made)
        try:
            super().__init__(data_dir, app_kwargs=app_kwargs, **engine_kwargs)
        finally:
            test_http.Engine = made


def _wide(make):
    def engine(data_dir, item_features, context_features, **kwargs):
        return make(data_dir, item_features=64, **kwargs)
    return engine


@pytest.fixture
def server(tmp_path):
    s = Wide(tmp_path / "d", policy="lints", seed=0)
    yield s
    s.stop()


def test_official_client_rank_reward_activate(server):
    from azure.cognitiveservices.personalizer import PersonalizerClient
    from azure.cognitiveservices.personalizer.models import RankableAction, RankRequest
    from msrest.authentication import CognitiveServicesCredentials

    client = PersonalizerClient(server.url, CognitiveServicesCredentials(TOKEN))
    actions = [RankableAction(id=a["id"], features=a["features"])
               for a in RANK_BODY["actions"]]
    resp = client.rank(RankRequest(actions=actions, context_features=RANK_BODY["contextFeatures"],
                                   excluded_actions=["SportsArticle"], event_id="evt-1"))
    assert resp.event_id == "evt-1"
    assert resp.reward_action_id in {"NewsArticle", "EntertainmentArticle", "GymAd"}
    ids = [r.id for r in resp.ranking]
    assert sorted(ids) == sorted(a["id"] for a in RANK_BODY["actions"])
    assert ids[-1] == "SportsArticle" and resp.ranking[-1].probability == 0.0
    assert ids[0] == resp.reward_action_id
    assert abs(sum(r.probability for r in resp.ranking) - 1.0) < 1e-9
    assert client.events.reward("evt-1", 1.0) is None  # 204
    # a deferred event, then activated through the client
    deferred = client.rank(RankRequest(actions=actions, defer_activation=True))
    assert client.events.activate(deferred.event_id) is None
    client.events.reward(deferred.event_id, 0.5)
    statuses = dict(server.engine.store.db.execute(
        "SELECT decision_id, status FROM rewards").fetchall())
    assert statuses == {"evt-1": "joined", deferred.event_id: "joined"}
    from msrest.exceptions import HttpOperationError

    with pytest.raises(HttpOperationError) as err:  # an unknown event: 404, our error shape
        client.events.reward("never-issued", 1.0)
    assert err.value.response.status_code == 404
    assert err.value.response.json()["error"]["field"] == "eventId"
    bad = PersonalizerClient(server.url, CognitiveServicesCredentials("wrong-key"))
    with pytest.raises(HttpOperationError) as err:
        bad.rank(RankRequest(actions=actions))
    assert err.value.response.status_code == 401


def test_rank_bodies_from_the_reference(server):
    c = server.client
    keyed = httpx.Client(base_url=server.url, headers=KEY, timeout=10)
    r = keyed.post(f"{P}/rank", json=RANK_BODY)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"ranking", "eventId", "rewardActionId"}
    assert body["eventId"] == RANK_BODY["eventId"]
    assert body["rewardActionId"] != "SportsArticle"
    assert c.post(f"{P}/events/{body['eventId']}/reward", json={"value": 0.8}).status_code == 204
    # the same id again is refused, named as the body names it
    again = c.post(f"{P}/rank", json=RANK_BODY)
    assert again.status_code == 422 and again.json()["error"]["field"] == "eventId"
    # the key header is for Personalizer's routes only
    assert keyed.post("/v1/rank", json={}).status_code == 401
    keyed.close()


@pytest.mark.parametrize("change, field", [
    ({"excludedActions": ["NewsArticle", "SportsArticle", "EntertainmentArticle", "GymAd"]},
     "excludedActions"),
    ({"contextFeatures": [{"user": {"age": 1e300}}]}, "contextFeatures[0].user.age"),
    ({"contextFeatures": {"user": "x"}}, "contextFeatures"),
    ({"actions": [{"id": "a", "features": [{"x": float("nan")}]}]}, "actions[0].features[0].x"),
    ({"actions": [{"id": "a", "features": [{"x": [1, [2, {"y": 1e12}]]}]}]},
     "actions[0].features[0].x[1][1].y"),
    ({"actions": [{"id": "a", "features": ["flat"]}]}, "actions[0].features[0]"),
    ({"actions": []}, "actions"),
    ({"actions": [{"id": "a"}, {"id": "a"}]}, "actions[1].id"),
    ({"eventId": ""}, "eventId"),
])
def test_bad_bodies_name_the_field(server, change, field):
    body = {**RANK_BODY, "eventId": None, **change}
    r = server.client.post(f"{P}/rank", content=json.dumps(body, allow_nan=True),
                           headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["field"] == field, r.text


def test_multislot_rank_reward_activate(server):
    c = server.client
    body = {"contextFeatures": [{"user": {"id": "u1"}}, {"timeOfDay": "evening"}],
            "actions": [{"id": f"a{k}", "features": [{"kind": f"k{k % 3}", "price": k}]}
                        for k in range(6)],
            "slots": [{"id": "main", "features": [{"size": "large"}], "baselineAction": "a0"},
                      {"id": "side", "features": [{"size": "small"}], "baselineAction": "a1",
                       "excludedActions": ["a5"]}],
            "eventId": "ms-1", "deferActivation": True}
    r = c.post(f"{P}/multislot/rank", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["eventId"] == "ms-1" and [s["id"] for s in out["slots"]] == ["main", "side"]
    chosen = [s["rewardActionId"] for s in out["slots"]]
    assert len(set(chosen)) == 2 and chosen[1] != "a5"
    assert c.post(f"{P}/multislot/events/ms-1/activate").status_code == 204
    r = c.post(f"{P}/multislot/events/ms-1/reward",
               json={"reward": [{"slotId": "main", "value": 1}, {"slotId": "side", "value": 0}]})
    assert r.status_code == 204, r.text
    # each slot is its own decision, with its own propensity and reward
    learned = dict(server.engine.store.db.execute(
        "SELECT decision_id, reward FROM decisions WHERE decision_id LIKE 'ms-1/%'").fetchall())
    assert learned == {"ms-1/main": 1.0, "ms-1/side": 0.0}
    bad = c.post(f"{P}/multislot/events/ms-1/reward",
                 json={"reward": [{"slotId": "nope", "value": 1}]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "reward[0].slotId"
    assert c.post(f"{P}/multislot/events/none/activate").status_code == 404
    dup = c.post(f"{P}/multislot/rank", json={**body, "slots": [
        {"id": "x", "baselineAction": "a0"}, {"id": "y", "baselineAction": "a0"}], "eventId": "m2"})
    assert dup.status_code == 422 and dup.json()["error"]["field"] == "slots[1].baselineAction"


def test_settings_get_put(server):
    c = server.client
    policy = c.get(f"{P}/configurations/policy").json()
    assert policy["name"] == "lints" and json.loads(policy["arguments"]) == {}
    assert c.put(f"{P}/configurations/policy", json={}).status_code == 405
    got = c.get(f"{P}/configurations/service").json()
    assert got["learningMode"] == "Online" and got["rewardWaitTime"] == "PT1H"
    # logRetentionDays sets the engine's retention window, and the body says it is enforced
    assert got["logRetentionEnforced"] is True
    r = c.put(f"{P}/configurations/service", json={**got, "logRetentionDays": 30})
    assert r.status_code == 200 and r.json()["logRetentionDays"] == 30, r.text
    assert r.json()["logRetentionEnforced"] is True
    r = c.put(f"{P}/configurations/service",
              json={"rewardWaitTime": "PT5M", "defaultReward": -0.5,
                    "explorationPercentage": 0.3, "learningMode": "Apprentice"})
    assert r.status_code == 200, r.text
    assert r.json()["rewardWaitTime"] == "PT5M"
    assert server.engine.decider.wait_window == 300.0
    assert server.engine.joiner.default_reward == -0.5
    assert server.engine.decider.explore == 0.3
    for body, field in [({"learningMode": "Offline"}, "learningMode"),
                        ({"rewardWaitTime": "10 minutes"}, "rewardWaitTime"),
                        ({"explorationPercentage": 2}, "explorationPercentage"),
                        ({"rewardAggregation": "sum"}, "rewardAggregation"),
                        ({"modelExportFrequency": "PT5M"}, "modelExportFrequency")]:
        r = c.put(f"{P}/configurations/service", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def test_deferred_never_activated_learns_nothing(tmp_path):
    """Deferred events that are never activated leave the policy untouched: a reward is
    recorded as late, and the wait window closing learns no default either; activated
    ones are learned."""
    from engine import Engine
    from engine.personalizer import Personalizer

    now = [1000.0]
    eng = Engine(item_features=32, policy="lints", seed=0, clock=lambda: now[0],
                 wait_window=60)
    p = Personalizer(eng)
    learner = eng.learners["default"]
    actions = [{"id": "a", "features": [{"g": "x"}]}, {"id": "b", "features": [{"g": "y"}]}]
    ids = [p.rank({"actions": actions, "deferActivation": True})["eventId"] for _ in range(5)]
    p.reward(ids[0], 1.0)
    now[0] += 3600  # every window has closed
    p.rank({"actions": actions})  # (a call that expires the windows)
    assert learner.learned_seq == 0 and learner.pending == 0
    statuses = dict(eng.store.db.execute("SELECT decision_id, status FROM rewards").fetchall())
    assert statuses == {ids[0]: "late"}
    p.activate(ids[1])
    p.reward(ids[1], 1.0)
    assert learner.learned_seq > 0
    eng.close()


def test_deferral_survives_a_restart(tmp_path):
    """A deferred event stays off the wait list across a restart (no default reward is
    learned when its window closes), and can still be activated and rewarded after it."""
    from engine import Engine
    from engine.personalizer import Personalizer

    now = [1000.0]
    settings = dict(item_features=32, policy="lints", seed=0, clock=lambda: now[0],
                    wait_window=60)
    actions = [{"id": "a", "features": [{"g": "x"}]}, {"id": "b", "features": [{"g": "y"}]}]
    eng = Engine(tmp_path / "d", **settings)
    ids = [Personalizer(eng).rank({"actions": actions, "deferActivation": True})["eventId"]
           for _ in range(3)]
    eng.close()
    eng = Engine(tmp_path / "d", **settings)  # restarted: recovery reloads what waits
    p, learner = Personalizer(eng), eng.learners["default"]
    assert not any(i in eng.joiner.waiting for i in ids)
    now[0] += 3600  # every window has closed
    p.rank({"actions": actions})  # (a call that expires the windows)
    assert learner.learned_seq == 0 and learner.pending == 0
    p.activate(ids[1])  # activated after the restart: awaited, then learned
    assert ids[1] in eng.joiner.waiting
    p.reward(ids[1], 1.0)
    assert learner.learned_seq > 0
    status = dict(eng.store.db.execute("SELECT decision_id, status FROM decisions"))
    eng.close()
    assert [status[i] for i in ids] == ["deferred", "joined", "deferred"]


def test_jsonfeatures_deterministic_and_bounded():
    jf = JsonFeatures(width=8)
    ctx = [{"user": {"id": "u1", "tier": "gold", "age": 30}}, {"mobile": True}]
    acts = [[{"genre": g, "len": 3.5, "tags": ["a", "b"]}] for g in ("jazz", "rock")]
    a, b = jf.vectors(ctx, acts), JsonFeatures(width=8).vectors(ctx, acts)
    assert a.shape == (2, 8) and np.array_equal(a, b)
    # known answer: a lone string feature is one signed 1 in one slot
    one = JsonFeatures(width=1024).vectors(None, [[{"g": "jazz"}]])[0]
    assert sorted(np.abs(one[one != 0]).tolist()) == [1.0]
    # the interaction separates what the sides alone cannot: user x genre
    jf = JsonFeatures(width=256)
    v = {(u, g): jf.vectors([{"u": u}], [[{"g": g}]])[0] for u in "xy" for g in "pq"}
    assert not np.allclose(v["x", "p"] - v["x", "q"], v["y", "p"] - v["y", "q"])


def test_profile_features_join_the_sent_ones(server):
    """A user id at ``user.id`` in the context: its profile (interests in the actions'
    categories, from its rewards) fills the engine's user x item columns of the decision."""
    c = server.client
    body = {"contextFeatures": [{"user": {"id": "fan"}}],
            "actions": [{"id": "j", "features": [{"genre": "jazz"}]},
                        {"id": "r", "features": [{"genre": "rock"}]}]}
    for _ in range(6):
        out = c.post(f"{P}/rank", json={**body, "excludedActions": ["r"]}).json()
        assert c.post(f"{P}/events/{out['eventId']}/reward", json={"value": 1}).status_code == 204
    profile = c.get("/v1/profiles/fan").json()
    assert "genre=jazz" in str(profile["interests"])
    out = c.post(f"{P}/rank", json={**body, "eventId": "look"}).json()
    assert out["eventId"] == "look"
    eng = server.engine
    names = eng.featurizer.feature_names
    blob, ids = eng.store.db.execute(
        "SELECT phi, candidate_ids FROM decisions WHERE decision_id = 'look'").fetchone()
    phi = np.frombuffer(blob, dtype=np.float32).reshape(2, len(names))
    jazz = json.loads(ids).index("j")
    col = names.index("topic_affinity")
    assert phi[jazz, col] > 0 and phi[1 - jazz, col] == 0


def test_official_client_against_loopwise_serve(tmp_path):
    """``loopwise serve`` in a child process, its Personalizer settings from serve.yaml."""
    import os
    import subprocess
    import sys
    import time

    from azure.cognitiveservices.personalizer import PersonalizerClient
    from azure.cognitiveservices.personalizer.models import RankableAction, RankRequest
    from msrest.authentication import CognitiveServicesCredentials
    from test_http import free_port

    port = free_port()
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("engine:\n  policy: lints\n  item_features: 64\n  seed: 0\n"
                   "personalizer:\n  learning_mode: Apprentice\n  reward_wait_time: 120\n"
                   "  user_path: user.id\n")
    with open(tmp_path / "serve.log", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "experiments.cli", "serve", "--config", str(cfg),
             "--data-dir", str(tmp_path / "d"), "--port", str(port)],
            env={**os.environ, "LOOPWISE_TOKEN": TOKEN}, stdout=subprocess.DEVNULL, stderr=err)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline and proc.poll() is None, \
                (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.1)
        client = PersonalizerClient(url, CognitiveServicesCredentials(TOKEN))
        actions = [RankableAction(id=a["id"], features=a["features"])
                   for a in RANK_BODY["actions"]]
        for _ in range(3):  # apprentice: the first action, every time
            resp = client.rank(RankRequest(actions=actions,
                                           context_features=RANK_BODY["contextFeatures"]))
            assert resp.reward_action_id == "NewsArticle"
            client.events.reward(resp.event_id, 1.0)
        settings = httpx.get(f"{url}{P}/configurations/service", headers=KEY).json()
        assert settings["learningMode"] == "Apprentice" and settings["rewardWaitTime"] == "PT2M"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_deferred_over_http(server):
    """Through the server: a deferred event's reward before activation is recorded as late
    and learned by nothing; an activated one is joined."""
    c = server.client
    body = {**RANK_BODY, "eventId": None, "deferActivation": True}
    never = c.post(f"{P}/rank", json=body).json()["eventId"]
    shown = c.post(f"{P}/rank", json=body).json()["eventId"]
    assert c.post(f"{P}/events/{never}/reward", json={"value": 1}).status_code == 204
    assert c.post(f"{P}/events/{shown}/activate").status_code == 204
    assert c.post(f"{P}/events/{shown}/activate").status_code == 204  # again: no change
    assert c.post(f"{P}/events/{shown}/reward", json={"value": 1}).status_code == 204
    statuses = dict(server.engine.store.db.execute(
        "SELECT decision_id, status FROM rewards").fetchall())
    assert statuses == {never: "late", shown: "joined"}
    assert c.post(f"{P}/events/nope/activate").status_code == 404


def test_multislot_apprentice_returns_each_baseline(server):
    c = server.client
    assert c.put(f"{P}/configurations/service",
                 json={"learningMode": "Apprentice"}).status_code == 200
    body = {"contextFeatures": [{"user": {"id": "u9"}}],
            "actions": [{"id": f"a{k}", "features": [{"kind": f"k{k}"}]} for k in range(4)],
            "slots": [{"id": "s1", "baselineAction": "a2"}, {"id": "s2", "baselineAction": "a0"},
                      {"id": "s3", "baselineAction": "a3"}]}
    for _ in range(3):
        out = c.post(f"{P}/multislot/rank", json=body).json()
        assert [s["rewardActionId"] for s in out["slots"]] == ["a2", "a0", "a3"]
        r = c.post(f"{P}/multislot/events/{out['eventId']}/reward",
                   json={"reward": [{"slotId": "s1", "value": 1}]})
        assert r.status_code == 204
    assert c.get("/v1/apprentice").json()["events"] == 3


def test_reward_values_out_of_range_are_named(server):
    c = server.client
    one = c.post(f"{P}/rank", json={**RANK_BODY, "eventId": None}).json()["eventId"]
    r = c.post(f"{P}/events/{one}/reward", content=b'{"value": 1e300}',
               headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "value", r.text
    body = {"actions": [{"id": "a"}, {"id": "b"}],
            "slots": [{"id": "s1", "baselineAction": "a"}, {"id": "s2", "baselineAction": "b"}]}
    ms = c.post(f"{P}/multislot/rank", json=body).json()["eventId"]
    r = c.post(f"{P}/multislot/events/{ms}/reward", json={"reward": [
        {"slotId": "s1", "value": 1}, {"slotId": "s2", "value": 1e300}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "reward[1].value", r.text
