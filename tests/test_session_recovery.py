"""Sessions survive a restart: after a clean close or a SIGKILL, the engine rebuilds every
open session (its trace, its steps awaiting a reward or what follows) from the saved state
and the tail of the logs, so the session features of later decisions and every transition
learned equal those of an uninterrupted run (known answers: the same scenario run without
the restart)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_engine_sessions import Clock, Recorder

from engine import Engine
from engine.featurizer import Featurizer

DS = Featurizer(2, (), 1000, session_features=True).n_features
USERS = ("A", "B", "C", "D")
STEPS, RESTART = 60, 37


def open_engine(data_dir: str | None) -> tuple[Engine, Clock]:
    clock = Clock()
    eng = Engine(data_dir, policy=Recorder(DS), item_features=2, clock=clock, seed=1,
                 wait_window=35.0, session_gap=100.0, learn_batch=2, snapshot_every=25,
                 profile={"session_features": True})
    return eng, clock


def cands(t: int, n: int) -> list[dict]:
    return [{"id": f"i{(t * 7 + k) % 23}", "topics": [f"t{k % 3}"],
             "features": [round((t * 13 + k * 5) % 17 / 17, 3), k / 4]} for k in range(n)]


def acts(t: int, j: int) -> bool:
    """User j decides at step t (D idles from 20 to 34: its session ends by the gap)."""
    return (t + j) % 3 != 0 and not (j == 3 and 20 <= t < 35)


def step(eng: Engine, clock: Clock, t: int) -> None:
    """Step t of the scenario, the same in every run: decisions (the shown candidate fixed
    by ``choose``), rewards now, one step late or never (the default, 35 s later), clicks,
    and B's session_end every 7 steps."""
    clock.t = 10.0 * t
    for j in range(len(USERS)):
        if t > 0 and acts(t - 1, j) and (t - 1 + j) % 5 == 1:  # last step's late reward
            eng.reward(f"d{t - 1}-{j}", 0.25 * j)
    for j, user in enumerate(USERS):
        if acts(t, j):
            n = 2 + (t + j) % 3
            d = eng.rank(user, cands(t, n), decision_id=f"d{t}-{j}", choose=(t + j) % n)
            if (t + j) % 5 > 1:
                eng.reward(d.decision_id, (t * 3 + j) % 4 / 2)
            if (t + j) % 4 == 0:
                eng.ingest([{"user_id": user, "type": "click", "ts": clock.t,
                             "item_id": d.chosen}])
    if t % 7 == 6:
        eng.ingest([{"user_id": "B", "type": "session_end", "ts": clock.t}])


def uninterrupted() -> tuple[list, list]:
    eng, clock = open_engine(None)
    for t in range(STEPS):
        step(eng, clock, t)
    pol = eng.learners["default"].policy
    eng.close()
    return pol.transitions, pol.seen


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from test_session_recovery import open_engine, step
    eng, clock = open_engine(sys.argv[1])
    for t in range(int(sys.argv[3])):
        step(eng, clock, t)
    print("acknowledged", flush=True)
    sys.stdin.read()  # killed here, after the last snapshot: the tail is only in the logs
""")


def first_part(data: Path, how: str) -> None:
    if how == "close":
        eng, clock = open_engine(str(data))
        for t in range(RESTART):
            step(eng, clock, t)
        eng.close()
        return
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(Path(__file__).parent),
                             str(RESTART)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=os.getcwd())
    assert proc.stdout.readline().strip() == "acknowledged"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def assert_same(got: list, want: list) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for a, b in zip(g, w, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("how", ["close", "kill"])
def test_sessions_survive_a_restart_with_the_same_features_and_transitions(tmp_path, how):
    want_transitions, want_seen = uninterrupted()
    first_part(tmp_path / "d", how)
    eng, clock = open_engine(str(tmp_path / "d"))
    pol = eng.learners["default"].policy
    saved = pickle.loads(eng.store.load_policy("default")[2])
    assert len(eng.sessions) > 0 and eng.sessions.traces._open  # sessions open at the restart
    if how == "kill":  # the last snapshot came before the kill: the replay had work to do
        assert len(pol.transitions) > len(saved.transitions)
    seen_before = len(pol.seen)
    for t in range(RESTART, STEPS):
        step(eng, clock, t)
    after = pol.seen[seen_before:]
    assert len(after) > 10
    # every decision after the restart sees the session (steps, clicks, reward, age, trace)
    # as without it; and every transition of the run, before and after, is the same
    assert_same([(a,) for a in after], [(w,) for w in want_seen[-len(after):]])
    assert_same(pol.transitions, want_transitions)
    eng.close()


def test_a_forgotten_user_leaves_no_session_behind(tmp_path):
    """Forgetting a user drops their sessions from memory and from the saved state, which
    keeps its log positions (the policies were not saved with it); after a crash nothing
    of them comes back."""
    eng, clock = open_engine(str(tmp_path))
    for t in range(12):
        step(eng, clock, t)
    eng.snapshot()
    marks = json.loads(eng.store.get_meta("sessions"))["marks"]
    assert '"A"' in eng.store.get_meta("sessions")
    eng.forget("A")
    state = json.loads(eng.store.get_meta("sessions"))
    assert '"A"' not in json.dumps(state) and state["marks"][:2] == marks[:2]
    eng.backend.close()  # a crash: no snapshot
    eng.store.close()
    eng, clock = open_engine(str(tmp_path))
    assert "A" not in eng.sessions.traces._open
    assert all(s.user_id != "A" for s in eng.sessions._steps.values())
    assert any(s.user_id == "B" for s in eng.sessions._steps.values())
    eng.close()


def test_retention_deleting_the_newest_decision_keeps_the_replay_tail(tmp_path):
    # retention can delete the newest decision row, whose rowid SQLite then gives again:
    # the saved sessions' replay (decisions after the saved rowid) must start at the last
    # row left, or a restart would miss the decisions made after the deletion
    clock = Clock(10 * 86_400.0)
    eng = Engine(str(tmp_path / "d"), policy=Recorder(DS), item_features=2, clock=clock,
                 seed=1, wait_window=35.0, session_gap=100.0,
                 profile={"session_features": True}, retention_days=1.0)
    for j, user in enumerate(USERS):
        eng.rank(user, cands(j, 3))
    clock.t += 2 * 86_400.0  # every decision has its default reward and is out of the window
    eng.ingest([])
    db = eng.store.db
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0
    d = eng.rank("A", cands(9, 3))
    row = eng.store.db.execute("SELECT rowid FROM decisions WHERE decision_id = ?",
                               (d.decision_id,)).fetchone()[0]
    assert row > json.loads(eng.store.get_meta("sessions"))["marks"][2]
    eng.close()
