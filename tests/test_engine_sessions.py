"""Sessions in the engine: consecutive decisions of a user become the transitions an RL
policy learns (engine.session), checked against a hand-computed sequence."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Engine, ValidationError
from engine.featurizer import Featurizer
from policies.uniform import Uniform

D = Featurizer(2, (), 1000).n_features


class Recorder(Uniform):
    """Uniform decisions; records what it was asked to decide and the transitions it got."""

    def __init__(self, n_features: int, seed: int | None = 0):
        super().__init__(n_features, seed)
        self.seen: list[np.ndarray] = []  # each act call's phi (B, K, D)
        self.transitions: list[tuple] = []
        self.updates = 0

    def act(self, phi, mask=None):
        self.seen.append(np.array(phi, dtype=float))
        return super().act(phi, mask)

    def _update(self, phi, rewards, propensities):
        self.updates += len(rewards)

    def _learn_one(self, x, reward, propensity):
        self.updates += 1

    def learn_transitions(self, phi, rewards, propensities, next_phi, next_mask, done):
        for i in range(len(rewards)):
            k = int(next_mask[i].sum())
            self.transitions.append((phi[i].copy(), float(rewards[i]), float(propensities[i]),
                                     next_phi[i, :k].copy(), bool(done[i])))
        return self


class Clock:
    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def cands(n: int, tag: str) -> list[dict]:
    return [{"id": f"{tag}{k}", "topics": [f"t{k}"], "features": [float(k), 1.0 - k / 4]}
            for k in range(n)]


def test_transitions_match_a_hand_computed_sequence():
    """Users A and B interleaved; A's session ends by a session_end event, B's by the gap.

    t=0 A decides a1, t=10 B decides b1, t=20 a1 rewarded 1.0, t=30 A decides a2 (a1 -> a2),
    t=40 b1 rewarded 0.5, t=50 A's session_end (a2 final), t=60 B decides b2 (b1 -> b2,
    50 <= gap 100), t=70 a2 rewarded 2.0, t=75 A decides a3 (a new session), t=80 b2
    rewarded 0.0, t=200: a3's window (75+50) closed, so its default reward 0.0; b2's gap
    (60+100) and a3's (75+100) passed, so both end; B decides b3 (still open at close)."""
    clock = Clock()
    pol = Recorder(D)
    eng = Engine(policy=pol, item_features=2, clock=clock, seed=3, wait_window=50.0,
                 session_gap=100.0, default_reward=0.0)
    assert eng.sessions is not None and eng.sessions.variants == {"default"}
    log: dict[str, tuple] = {}  # decision -> (its act phi (K, D), chosen index, propensity)

    def rank(t, user, name, n):
        clock.t = t
        c = cands(n, name)
        d = eng.rank(user, c)
        log[name] = (pol.seen[-1][0, :n], [x["id"] for x in c].index(d.chosen), d.propensity,
                     d.decision_id)

    def reward(t, name, value):
        clock.t = t
        assert eng.reward(log[name][3], value).status == "joined"

    rank(0, "A", "a1", 2)
    rank(10, "B", "b1", 3)
    reward(20, "a1", 1.0)
    assert pol.transitions == []
    rank(30, "A", "a2", 4)
    reward(40, "b1", 0.5)
    clock.t = 50
    eng.ingest([{"user_id": "A", "type": "session_end", "ts": 50.0}])
    rank(60, "B", "b2", 2)
    reward(70, "a2", 2.0)
    rank(75, "A", "a3", 3)
    reward(80, "b2", 0.0)
    assert len(pol.transitions) == 3
    rank(200, "B", "b3", 2)

    def chosen(name):
        phi, idx, prop, _ = log[name]
        return phi[idx], prop

    expected = [("a1", 1.0, "a2", False), ("b1", 0.5, "b2", False), ("a2", 2.0, None, True),
                ("b2", 0.0, None, True), ("a3", 0.0, None, True)]
    assert len(pol.transitions) == len(expected)
    for got, (name, r, nxt, done) in zip(pol.transitions, expected, strict=True):
        x, prop = chosen(name)
        np.testing.assert_allclose(got[0], x)
        assert got[1] == r and got[2] == pytest.approx(prop) and got[4] is done
        if nxt is None:
            assert got[3].shape == (0, D)
        else:
            np.testing.assert_allclose(got[3], log[nxt][0])
    assert pol.updates == 0  # nothing went to the bandit path
    assert len(eng.sessions) == 1  # b3 waits for its reward and what follows
    prof = eng.profile("A")
    # the profile sees reward events (joined rewards, not defaults): A's session_end at 50
    # closed the session of a1's reward, a2's reward at 70 began the next
    assert (prof["session"]["steps"], prof["session"]["started"]) == (1, 70.0)
    assert eng.profile("B")["session"]["steps"] == 2  # b1's and b2's rewards (40, 80)
    eng.close()


def test_profile_session_view():
    eng = Engine(policy="uniform", clock=Clock(100.0), session_gap=30.0)
    assert eng.sessions is None  # bandit policies: no session tracking in the loop
    ev = [{"user_id": "u", "type": "click", "ts": 10.0, "item_id": "x"},
          {"user_id": "u", "type": "view", "ts": 20.0, "item_id": "y"},
          {"user_id": "u", "type": "click", "ts": 60.0, "item_id": "x"},  # gap 40 > 30
          {"user_id": "u", "type": "view", "ts": 70.0, "item_id": "x"}]
    eng.ingest(ev)
    s = eng.profile("u", now=75.0)["session"]
    assert (s["started"], s["events"], s["clicks"], s["open"]) == (60.0, 2, 1, True)
    eng.ingest([{"user_id": "u", "type": "session_end", "ts": 72.0}])
    assert eng.profile("u", now=75.0)["session"]["open"] is False
    eng.ingest([{"user_id": "u", "type": "click", "ts": 74.0, "item_id": "x"}])
    s = eng.profile("u", now=75.0)["session"]
    assert (s["started"], s["events"], s["clicks"], s["open"]) == (74.0, 1, 1, True)
    eng.close()


def test_session_gap_is_checked():
    with pytest.raises(ValidationError, match="session_gap"):
        Engine(policy="uniform", session_gap=0)


def test_rl_engine_reopens(tmp_path):
    clock = Clock()
    eng = Engine(str(tmp_path), policy=Recorder(D), item_features=2, clock=clock,
                 learn_batch=4)
    d = eng.rank("A", cands(2, "a"))
    eng.reward(d.decision_id, 1.0)
    clock.t = 5
    eng.rank("A", cands(2, "b"))
    eng.close()
    eng = Engine(str(tmp_path), policy=Recorder(D), item_features=2, clock=clock,
                 learn_batch=4)
    assert len(eng.learners["default"].policy.transitions) == 1  # flushed at close
    eng.close()
