"""Slates as Personalizer's multi-slot users expect: a reward per slot, each slot learned with
the propensity it was filled with, and the HTTP ``probability`` of each slot that propensity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine import Engine
from engine.errors import ValidationError

CANDS = [{"id": f"i{k}", "features": [float(k == 1), 0.1 * k]} for k in range(5)]


def engine(path, clock, **kw):
    kw.setdefault("learn_batch", 1000)  # records stay in the learner, to be read back
    return Engine(path, policy="egreedy", policy_params={"epsilon": 0.5}, item_features=2,
                  clock=clock, seed=3, wait_window=10.0, **kw)


def test_each_slot_is_learned_with_the_propensity_it_was_filled_with(tmp_path):
    t = [100.0]
    eng = engine(tmp_path / "d", lambda: t[0])
    try:
        d = eng.rank("u1", CANDS, slate_size=3)
        assert len(d.slot_propensities) == 3 and d.slot_propensities[0] == d.propensity
        results = eng.reward(d.decision_id, [1.0, 0.0, 1.0])
        assert [(r.status, r.learned) for r in results] == [("joined", True)] * 3
        records = eng.learners["default"]._records
        # slot i learned on its own item's features with the propensity it was filled with
        assert [r[2] for r in records] == d.slot_propensities
        assert [r[1] for r in records] == [1.0, 0.0, 1.0]
        feats = {c["id"]: c["features"] for c in CANDS}
        for (phi, *_), item in zip(records, d.ranking[:3], strict=True):
            assert phi[-2:].tolist() == pytest.approx(feats[item])
        # the later slots are logged as one-slot decisions over the candidates left
        for i in (1, 2):
            row = eng.store.decision(f"{d.decision_id}#{i}")
            probs = np.frombuffer(row["probabilities"], dtype=np.float64)
            assert probs[row["chosen"]] == d.slot_propensities[i]
            assert json.loads(row["candidate_ids"])[row["chosen"]] == d.ranking[i]
            placed = [d.candidate_ids.index(x) for x in d.ranking[:i]]
            assert probs[placed].sum() == 0 and probs.sum() == pytest.approx(1.0)
            assert (row["status"], row["reward"]) == ("joined", [1.0, 0.0, 1.0][i])
        assert eng.reward(d.decision_id, 1.0, slot=2).status == "duplicate"
    finally:
        eng.close()


def test_unreported_slots_get_the_default_and_survive_a_restart(tmp_path):
    t = [100.0]
    eng = engine(tmp_path / "d", lambda: t[0], default_reward=0.0)
    d = eng.rank("u1", CANDS, slate_size=3)
    assert eng.reward(d.decision_id, 1.0, slot=1).status == "joined"
    eng.close()
    eng = engine(tmp_path / "d", lambda: t[0], default_reward=0.0)
    try:  # slots awaiting their rewards are reloaded with the decision
        assert eng.reward(d.decision_id, 0.5, slot=2).status == "joined"
        t[0] += 20  # the window closes: slot 0 learns the default reward
        eng.rank("u2", CANDS)
        row = eng.store.decision(d.decision_id)
        assert (row["status"], row["reward"]) == ("default", 0.0)
        assert eng.store.decision(f"{d.decision_id}#1")["status"] == "joined"
        assert eng.reward(d.decision_id, 1.0, slot=0).status == "late"
    finally:
        eng.close()


def test_a_slate_without_per_slot_rewards_yet_takes_them_after_a_restart(tmp_path):
    t = [100.0]
    eng = engine(tmp_path / "d", lambda: t[0])
    d = eng.rank("u1", CANDS, slate_size=3)
    eng.close()
    eng = engine(tmp_path / "d", lambda: t[0])
    try:
        results = eng.reward(d.decision_id, [0.0, 1.0, 1.0])
        assert [r.status for r in results] == ["joined"] * 3
        assert [r[2] for r in eng.learners["default"]._records] == d.slot_propensities
        row = eng.store.decision(f"{d.decision_id}#2")
        assert json.loads(row["candidate_ids"])[row["chosen"]] == d.ranking[2]
    finally:
        eng.close()


def test_a_slate_reward_without_slot_is_the_first_slots(tmp_path):
    t = [100.0]
    eng = engine(tmp_path / "d", lambda: t[0])
    try:
        d = eng.rank("u1", CANDS, slate_size=2)
        r = eng.reward(d.decision_id, 1.0)
        assert r.status == "joined" and len(eng.learners["default"]._records) == 1
        assert eng.learners["default"]._records[0][2] == d.propensity
        with pytest.raises(ValidationError, match="^slot: the later slots of this slate take "
                           "no reward of their own"):
            eng.reward(d.decision_id, 1.0, slot=1)
        one = eng.rank("u1", CANDS)
        assert eng.reward(one.decision_id, 1.0, slot=0).status == "joined"
    finally:
        eng.close()


@pytest.mark.parametrize(("value", "slot", "message"), [
    (1.0, 3, "slot: must be a slot of the decision, 0 to 2 (got 3)"),
    (1.0, -1, "slot: must be a slot of the decision, 0 to 2 (got -1)"),
    ([1.0, 0.0], None, "value: must list one reward per slot (3)"),
    ([1.0, 0.0, 1.0], 1, "slot: leave it out when value lists a reward per slot (got 1)"),
    (float("nan"), 1, "value: must be"),
])
def test_per_slot_reward_mistakes_are_named(tmp_path, value, slot, message):
    eng = engine(tmp_path / "d", lambda: 100.0)
    try:
        d = eng.rank("u1", CANDS, slate_size=3)
        with pytest.raises(ValidationError) as err:
            eng.reward(d.decision_id, value, slot=slot)
        assert str(err.value).startswith(message), str(err.value)
        assert len(eng.learners["default"]._records) == 0  # nothing learned
        assert eng.reward(d.decision_id, [0.0, 1.0, 0.0])[1].learned  # and the slate still takes
    finally:
        eng.close()


def test_http_slot_probabilities_and_per_slot_rewards(tmp_path):
    from tests.test_http import Server

    s = Server(tmp_path / "d", policy="egreedy", policy_params={"epsilon": 0.5}, seed=0)
    try:
        actions = [{"id": f"i{k}", "features": [float(k % 2), 0.5]} for k in range(5)]
        body = s.client.post("/v1/rank", json={"user_id": "u1", "actions": actions,
                                               "slateSize": 3}).json()
        d = s.engine.store.decision(body["eventId"])
        slot_props = np.frombuffer(d["slot_probabilities"], dtype=np.float64).tolist()
        assert [a["probability"] for a in body["ranking"][:3]] == slot_props
        r = s.client.post(f"/v1/events/{body['eventId']}/reward", json={"value": 1.0, "slot": 2})
        assert r.status_code == 200 and r.json()["status"] == "joined", r.text
        r = s.client.post(f"/v1/events/{body['eventId']}/reward", json={"value": 1.0, "slot": 3})
        assert r.status_code == 422 and r.json()["error"]["field"] == "slot", r.text
    finally:
        s.stop()
