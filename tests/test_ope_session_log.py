"""``loopwise ope --log DIR --sessions``: the engine's own log grouped into sessions by the
engine's rule (gap and session_end), checked against a hand-computed log."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine import Engine
from experiments.cli import main
from experiments.ope.run import run_session_ope_on_log


def write_log(path) -> list[float]:
    """A uniform engine over 2 candidates: A decides at 0, 10, 20, session_end at 25, then
    30 (a new session); B at 5, then 200 (the gap of 100 passed: a new session). Returns
    each session's return in order of its first decision: A1, B1, A2, B2."""
    t = [0.0]
    eng = Engine(str(path), policy="uniform", item_features=1, seed=0, clock=lambda: t[0],
                 session_gap=100.0, wait_window=1000.0)
    cands = [{"id": "x", "features": [1.0]}, {"id": "y", "features": [0.0]}]
    plan = [(0, "A", 1.0), (5, "B", 0.5), (10, "A", 0.0), (20, "A", 2.0), (30, "A", 1.5),
            (200, "B", 0.25)]
    for ts, user, value in plan:
        if ts == 30:
            t[0] = 25.0
            eng.ingest([{"user_id": "A", "type": "session_end", "ts": 25.0}])
        t[0] = float(ts)
        eng.reward(eng.rank(user, cands).decision_id, value)
    eng.close()
    return [1.0 + 0.0 + 2.0, 0.5, 1.5, 0.25]


def test_sessions_of_the_engine_log_and_a_target_equal_to_the_logging_policy(tmp_path):
    returns = write_log(tmp_path / "data")
    res = run_session_ope_on_log(tmp_path / "data", "uniform", gap=100.0, n_bootstrap=20)
    assert (res.n_sessions, res.n_decisions) == (4, 6)
    for name in ("PDIS", "WPDIS", "Logged"):  # every weight is 1: the logged mean return
        assert res[name].estimate == pytest.approx(np.mean(returns))
    gamma = run_session_ope_on_log(tmp_path / "data", "uniform", gap=100.0, gamma=0.5,
                                   n_bootstrap=20)
    assert gamma["Logged"].estimate == pytest.approx((1.0 + 0.5 * 0 + 0.25 * 2 + 0.5 + 1.5
                                                      + 0.25) / 4)
    one = run_session_ope_on_log(tmp_path / "data", "uniform", gap=1000.0, n_bootstrap=20)
    assert one.n_sessions == 3  # B's two decisions are one session under a longer gap


def test_cli(tmp_path, capsys):
    returns = write_log(tmp_path / "data")
    assert main(["ope", "--log", str(tmp_path / "data"), "--policy", "uniform", "--sessions",
                 "--session-gap", "100", "--bootstrap", "20", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pdis = next(r for r in rows if r["name"] == "PDIS")
    assert pdis["estimate"] == pytest.approx(np.mean(returns))
    assert main(["ope", "--log", str(tmp_path / "data"), "--policy", "uniform", "--sessions",
                 "--k-folds", "5"]) == 2
    assert "--k-folds: has no effect with --sessions" in capsys.readouterr().err
