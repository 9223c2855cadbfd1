"""Session features (profile.session_features): what the user did in the open session and
its trace of item features reach every candidate's row of phi, checked against hand-computed
values; they start over with a new session (by gap or by session_end)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_engine_sessions import Clock, Recorder, cands

from engine import Engine, ValidationError
from engine.featurizer import Featurizer
from engine.session import SESSION_FEATURES
from policies.uniform import Uniform

DS = Featurizer(2, (), 1000, session_features=True).n_features


class Seen(Uniform):
    """A bandit (no transitions) that records each act call's phi."""

    def __init__(self, n_features: int, seed: int | None = 0):
        super().__init__(n_features, seed)
        self.seen: list[np.ndarray] = []

    def act(self, phi, mask=None):
        self.seen.append(np.array(phi, dtype=float))
        return super().act(phi, mask)


def session_columns(eng: Engine) -> tuple[list[int], list[int]]:
    names = eng.featurizer.feature_names
    counts = [names.index(f"user_{n}") for n in SESSION_FEATURES]
    trace = [names.index(f"user_session_reward*item_{j}") for j in range(2)]
    return counts, trace


def test_layout_adds_the_session_after_the_user_features():
    plain, with_session = Featurizer(2), Featurizer(2, session_features=True)
    assert with_session.n_features == plain.n_features + len(SESSION_FEATURES) + 2
    names = with_session.feature_names
    assert names[with_session.item_columns] == ["item_0", "item_1"]
    assert names[with_session.item_columns.start - 2:with_session.item_columns.start] == \
        ["user_session_reward*item_0", "user_session_reward*item_1"]
    with pytest.raises(ValidationError, match="session_features"):
        Featurizer(2, session_features=1)
    with pytest.raises(ValidationError, match="profile.session_features"):
        Engine(policy="uniform", profile={"session_features": "yes"})


def test_session_features_match_a_hand_computed_sequence():
    """A: t=0 decides a1, t=5 clicks it, t=10 a1 rewarded 1.5, t=20 decides a2 (the session
    so far: 1 step, 1 click, reward 1.5, started at 5; trace 0.15 * a1's item features),
    t=25 a2 rewarded 0.5, t=30 session_end, t=40 decides a3 (a new session: zeros).
    B: t=0 decides b1, t=10 b1 rewarded 2.0, t=200 decides b2 (the gap of 100 passed: zeros)."""
    clock = Clock()
    pol = Seen(DS)
    eng = Engine(policy=pol, item_features=2, clock=clock, seed=1, wait_window=50.0,
                 session_gap=100.0, profile={"session_features": True})
    assert eng.sessions is not None and eng.sessions.variants == frozenset()  # a bandit
    counts, trace = session_columns(eng)
    rows: dict[str, np.ndarray] = {}
    chosen: dict[str, list[float]] = {}
    ids: dict[str, str] = {}

    def rank(t, user, name):
        clock.t = t
        c = cands(3, name)
        d = eng.rank(user, c)
        rows[name] = pol.seen[-1][0]
        ids[name] = d.decision_id
        chosen[name] = next(x["features"] for x in c if x["id"] == d.chosen)
        return d

    def reward(t, name, value):
        clock.t = t
        assert eng.reward(ids[name], value).status == "joined"

    d1 = rank(0, "A", "a1")
    rank(0, "B", "b1")
    for name in ("a1", "b1"):
        assert not rows[name][:, counts + trace].any()  # no session yet
    clock.t = 5
    eng.ingest([{"user_id": "A", "type": "click", "ts": 5.0, "item_id": d1.chosen}])
    reward(10, "a1", 1.5)
    reward(10, "b1", 2.0)
    rank(20, "A", "a2")
    want_counts = [0.1, 0.1, 0.15, math.log1p((20 - 5) / 100)]
    want_trace = (0.1 * 1.5 * np.array(chosen["a1"])).tolist()
    for row in rows["a2"]:  # the same for every candidate
        np.testing.assert_allclose(row[counts], want_counts)
        np.testing.assert_allclose(row[trace], want_trace)
    reward(25, "a2", 0.5)
    clock.t = 30
    eng.ingest([{"user_id": "A", "type": "session_end", "ts": 30.0}])
    rank(40, "A", "a3")
    rank(200, "B", "b2")
    for name in ("a3", "b2"):
        assert not rows[name][:, counts + trace].any(), name
    eng.close()


def test_rl_engine_learns_transitions_whose_features_carry_the_session():
    """The next state a transition carries is the next decision's rows, session included."""
    clock = Clock()
    pol = Recorder(DS)
    eng = Engine(policy=pol, item_features=2, clock=clock, seed=2, session_gap=100.0,
                 profile={"session_features": True})
    assert eng.sessions.variants == {"default"}
    _, trace = session_columns(eng)
    d = eng.rank("A", cands(2, "a"))
    eng.reward(d.decision_id, 1.0)
    clock.t = 10
    eng.rank("A", cands(2, "b"))
    (x, r, _, nxt, done), = pol.transitions
    assert r == 1.0 and not done
    item = next(c["features"] for c in cands(2, "a") if c["id"] == d.chosen)
    np.testing.assert_allclose(nxt[:, trace], [[0.1 * v for v in item]] * 2)
    assert not x[trace].any()
    eng.close()
