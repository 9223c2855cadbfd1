"""Smoke test: `loopwise simulate` on the session preset reports return and length per session."""

from __future__ import annotations

import math

import pyarrow.parquet as pq

from experiments.cli import main
from experiments.loop import session_ends

SESSION_COLUMNS = ("episode_return", "episode_return_lo", "episode_return_hi", "session_length")


def test_simulate_long_term_reports_return_and_length_per_session(tmp_path, capsys):
    rc = main(["simulate", "--preset", "long_term", "--policies", "lints,slateq",
               "--steps", "1200", "--batch-size", "50", "--users", "300", "--workers", "1",
               "--params", '{"slateq": {"train_every": 64, "train_steps": 1}}',
               "--out", str(tmp_path), "--name", "smoke", "--no-progress"])
    assert rc == 0
    out = tmp_path / "smoke"
    summary = pq.read_table(out / "summary.parquet").to_pylist()
    assert [s["policy"] for s in summary] == ["lints", "slateq"]
    for row in summary:
        assert set(SESSION_COLUMNS) <= set(row), sorted(row)
        assert row["n_sessions"] >= 2
        assert all(math.isfinite(row[c]) for c in SESSION_COLUMNS)
        assert row["episode_return_lo"] <= row["episode_return"] <= row["episode_return_hi"]
        assert row["session_length"] >= 1
    printed = capsys.readouterr().out
    assert "return/session [95% CI]" in printed and "session length [95% CI]" in printed
    assert "Return/session and session length" in (out / "report.md").read_text()


def test_presets_without_sessions_keep_their_columns(tmp_path):
    assert main(["simulate", "--steps", "200", "--batch-size", "100", "--users", "200",
                 "--policies", "uniform", "--out", str(tmp_path), "--name", "plain",
                 "--no-progress"]) == 0
    columns = set(pq.read_table(tmp_path / "plain" / "summary.parquet").column_names)
    assert not columns & {*SESSION_COLUMNS, "n_sessions"}


def test_session_ends_names_the_users_whose_session_ended():
    import numpy as np

    info = {"ended": np.array([False, True, True]), "users": np.array([7, 8, 9]), "ts": 60.0}
    assert session_ends(info, 3) == [
        {"user_id": "u8", "type": "session_end", "ts": 60.0, "event_id": "end-3-1"},
        {"user_id": "u9", "type": "session_end", "ts": 60.0, "event_id": "end-3-2"}]
