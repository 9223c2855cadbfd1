"""Smoke tests: `loopwise simulate` and `loopwise compare` end to end with tiny horizons."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from experiments.cli import main
from experiments.compare import ConfigError, load_config


def test_simulate_end_to_end(tmp_path, capsys):
    rc = main(["simulate", "--steps", "600", "--batch-size", "100", "--users", "200",
               "--policies", "uniform,lints", "--out", str(tmp_path), "--name", "smoke",
               "--no-progress"])
    assert rc == 0
    out = tmp_path / "smoke"
    for name in ("steps.parquet", "summary.parquet", "reward.png", "regret.png", "report.md"):
        assert (out / name).stat().st_size > 0, name
    steps = pq.read_table(out / "steps.parquet").to_pydict()
    assert len(steps["reward"]) == 1200 and set(steps["policy"]) == {"uniform", "lints"}
    assert set(steps["phase"]) == {0, 1}  # the shift happened half way
    summary = pq.read_table(out / "summary.parquet").to_pylist()
    assert [s["policy"] for s in summary] == ["uniform", "lints"]
    printed = capsys.readouterr().out
    assert "mean reward [95% CI]" in printed and "results written to" in printed
    assert "![reward over time](reward.png)" in (out / "report.md").read_text()


def test_simulate_parallel_runs_equal_serial_runs(tmp_path):
    common = ["simulate", "--steps", "400", "--batch-size", "100", "--users", "200",
              "--policies", "egreedy,lints", "--seeds", "0,1", "--out", str(tmp_path)]
    assert main([*common, "--name", "serial", "--workers", "1", "--no-progress"]) == 0
    assert main([*common, "--name", "parallel", "--workers", "2"]) == 0  # workers move the bar
    serial = pq.read_table(tmp_path / "serial" / "steps.parquet").to_pydict()
    parallel = pq.read_table(tmp_path / "parallel" / "steps.parquet").to_pydict()
    assert len(serial["reward"]) == 1600 and serial == parallel


def test_simulate_rejects_bad_flags(tmp_path, capsys):
    for argv, message in [(["--policies", "nope"], "error: --policies: unknown policy 'nope'"),
                          (["--steps", "10"], "error: --steps: must be at least"),
                          (["--workers", "0"], "error: --workers: must be an integer >= 1")]:
        assert main(["simulate", *argv, "--out", str(tmp_path)]) == 2
        assert capsys.readouterr().err.startswith(message)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_compare_end_to_end(tmp_path, capsys):
    cfg = write(tmp_path, """
name: smoke
simulator: {preset: drifting, n_users: 200}
horizon: 800
batch_size: 100
seeds: [0, 1]
workers: 2
variants:
  control: {policy: uniform}
  lints: {policy: lints, params: {v: 0.3}}
""")
    assert main(["compare", str(cfg), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "paired difference vs control" in printed
    report = json.loads(next(tmp_path.glob("compare-smoke-*/report.json")).read_text())
    assert set(report["variants"]) == {"control", "lints"}
    assert len(report["paired_differences"]["lints"]["per_seed"]) == 2
    assert len(report["online_ab"]) == 2


@pytest.mark.parametrize(("text", "message"), [
    ("variants: {a: {policy: uniform}}", "variants: List should have at least 2 items|variants"),
    ("variants: {a: {policy: uniform}, b: {policy: thompson}}", "variants.b.policy: unknown policy"),
    ("variants: {a: {policy: uniform}, b: {policy: uniform, weight: -1}}", "variants.b.weight"),
    ("variants: {a: {policy: uniform}, b: {policy: uniform}}\ncontrol: c", "control: 'c' is not"),
    ("variants: {a: {policy: uniform}, b: {policy: uniform}}\nhorizon: x", "horizon:"),
    ("variants: {a: {policy: uniform}, b: {policy: uniform}}\nseeds: [1, 1]", "seeds: must be distinct"),
    ("variants: {a: {policy: uniform}, b: {policy: uniform}}\ncolour: red", "colour: Extra inputs"),
    ("variants: {a: {policy: uniform}, b: {policy: uniform}}\nsimulator: {preset: windy}",
     "simulator.preset: unknown preset"),
    ("variants: {a: {policy: uniform}, b: {policy: uniform}}\nsimulator: {settings: {gravity: 1}}",
     "gravity: unknown simulator setting"),
    ("- just a list", "must be a YAML mapping"),
])
def test_config_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "experiments.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("simulate", "compare", "bench"):
        assert command in out


def test_sample_mean_ci_is_the_t_interval():
    import numpy as np
    from scipy import stats

    from experiments.metrics import sample_mean_ci

    x = np.array([0.31, 0.28, 0.35, 0.30, 0.29, 0.33, 0.27, 0.32, 0.34, 0.30, 0.31, 0.26, 0.36])
    m, lo, hi = sample_mean_ci(x)  # 13 values: the half-width uses t_{0.975, 12}
    half = stats.t.ppf(0.975, 12) * x.std(ddof=1) / np.sqrt(13)
    assert m == pytest.approx(x.mean(), rel=1e-15)
    assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-12)
    assert np.isnan(sample_mean_ci(np.array([1.0]))[1:]).all()
