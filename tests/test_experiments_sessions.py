"""Smoke tests: `loopwise simulate` and `loopwise compare` on the session preset report return
and length per session (compare: with paired per-seed differences), simulate plots return."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import yaml

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
    report = (out / "report.md").read_text()
    assert "Return/session and session length" in report
    assert (out / "return.png").stat().st_size > 0 and "](return.png)" in report


def test_presets_without_sessions_keep_their_columns(tmp_path):
    assert main(["simulate", "--steps", "200", "--batch-size", "100", "--users", "200",
                 "--policies", "uniform", "--out", str(tmp_path), "--name", "plain",
                 "--no-progress"]) == 0
    columns = set(pq.read_table(tmp_path / "plain" / "summary.parquet").column_names)
    assert not columns & {*SESSION_COLUMNS, "n_sessions"}
    assert not (tmp_path / "plain" / "return.png").exists()


def _compare(tmp_path, preset: str, seeds: list[int]) -> tuple[dict, str]:
    cfg = {"name": "smoke", "simulator": {"preset": preset, "n_users": 300}, "horizon": 600,
           "batch_size": 50, "seeds": seeds, "workers": 1, "control": "lints",
           "variants": {"lints": {"policy": "lints"},
                        "slateq": {"policy": "slateq",
                                   "params": {"train_every": 64, "train_steps": 1}}}}
    path = tmp_path / f"{preset}-{len(seeds)}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["compare", str(path), "--out", str(tmp_path / path.stem)]) == 0
    (out,) = (tmp_path / path.stem).iterdir()
    return json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def test_compare_long_term_reports_sessions_and_paired_differences(tmp_path):
    report, md = _compare(tmp_path, "long_term", [0, 1])
    sessions = report["sessions"]
    assert sessions["ci_over"] == "seeds"
    for v in ("lints", "slateq"):
        r = sessions["variants"][v]
        assert r["n_sessions"] >= 2 and len(r["per_seed_return"]) == 2
        assert r["episode_return_lo"] <= r["episode_return"] <= r["episode_return_hi"]
        assert r["session_length_lo"] <= r["session_length"] <= r["session_length_hi"]
    d = sessions["paired_differences"]["slateq"]
    expected = [a - b for a, b in zip(sessions["variants"]["slateq"]["per_seed_return"],
                                      sessions["variants"]["lints"]["per_seed_return"],
                                      strict=True)]
    assert d["per_seed"] == expected and d["ci"][0] <= d["mean_diff"] <= d["ci"][1]
    assert "return/session [95% CI]" in md and "95% CIs over seeds" in md
    assert "paired difference of return per session vs control" in md
    (out,) = (tmp_path / "long_term-2").iterdir()
    rows = pq.read_table(out / "summary.parquet").to_pylist()  # one row per variant
    assert [r["variant"] for r in rows] == ["lints", "slateq"]
    for r in rows:
        v = sessions["variants"][r["variant"]]
        assert all(r[c] == v[c] for c in SESSION_COLUMNS)
        assert r["mean_reward"] == report["variants"][r["variant"]]["mean_reward"]


def test_compare_pairs_every_two_treatments_and_gives_the_ratio_to_the_best_other():
    """Three variants: slateq against the control and against its myopic twin, known answers."""
    from experiments.compare import CompareConfig, format_sessions, summarize_session_seeds

    cfg = CompareConfig(simulator={"preset": "long_term", "n_users": 300}, control="lints",
                        variants={"lints": {"policy": "lints"}, "slateq": {"policy": "slateq"},
                                  "g0": {"policy": "slateq", "params": {"gamma": 0.0}}})
    returns = {"lints": ([2.0, 2.0], [3.0]), "slateq": ([6.0], [5.0, 7.0]),
               "g0": ([2.5], [3.5, 3.5])}
    per_seed = [{"variants": {v: {"episode_returns": r[s], "episode_lengths": [1.0] * len(r[s])}
                              for v, r in returns.items()}} for s in range(2)]
    out = summarize_session_seeds(cfg, per_seed)
    assert out["paired_between"]["slateq - g0"]["per_seed"] == [3.5, 2.5]
    assert out["paired_differences"]["slateq"]["per_seed"] == [4.0, 3.0]
    assert math.isclose(out["ratio_to_best_other"]["slateq"], 6.0 / 3.0)
    text = "\n".join(format_sessions(out))
    assert "between treatments" in text and "slateq 2.00x" in text


def test_compare_one_seed_gives_session_cis_over_sessions(tmp_path):
    report, md = _compare(tmp_path, "long_term", [3])
    r = report["sessions"]["variants"]["slateq"]
    assert report["sessions"]["ci_over"] == "sessions"
    assert r["episode_return_lo"] <= r["episode_return"] <= r["episode_return_hi"]
    assert "over the finished sessions (one seed)" in md


def test_compare_without_sessions_has_no_session_section(tmp_path):
    report, md = _compare(tmp_path, "stationary", [0])
    assert "sessions" not in report and "return/session" not in md


def test_example_long_term_config_loads():
    from experiments.compare import load_config

    cfg = load_config("experiments/configs/long_term_slateq.yaml")
    assert cfg.simulator.preset == "long_term" and set(cfg.variants) == {"lints", "slateq"}


def test_session_ends_names_the_users_whose_session_ended():
    import numpy as np

    info = {"ended": np.array([False, True, True]), "users": np.array([7, 8, 9]), "ts": 60.0}
    assert session_ends(info, 3) == [
        {"user_id": "u8", "type": "session_end", "ts": 60.0, "event_id": "end-3-1"},
        {"user_id": "u9", "type": "session_end", "ts": 60.0, "event_id": "end-3-2"}]


def test_bench_long_term_smoke(tmp_path, capsys):
    from experiments.benchmarks import bench_long_term

    path = tmp_path / "bench.json"
    assert bench_long_term.main(["--quick", "--seeds", "0", "--workers", "1", "--batch-size",
                                 "50", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "slateq - lints" in out and "slateq - slateq_gamma0" in out and "x" in out
    data = json.loads(path.read_text())
    assert sorted(r["policy"] for r in data["runs"]) == ["lints", "slateq", "slateq_gamma0"]
    assert all(r["sessions"] > 0 and r["return"] > 0 for r in data["runs"])
    assert set(data["ratio"]) == {"return", "return_2nd_half", "length", "length_2nd_half"}
