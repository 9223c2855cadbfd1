"""Generic columnar logs (CSV/Parquet + .npy action_dist) with configurable column names, the
result's table/JSON/PNG output, the `loopwise ope --data` command, and bad files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from experiments.cli import main
from experiments.ope import OPEInputError, run_ope_on_arrays, run_ope_on_data


def make_log(seed=0, n=600, k=4, slots=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    position = rng.integers(slots, size=n)
    logging = np.full((n, k), 1 / k)
    action = rng.integers(k, size=n)
    reward = (rng.random(n) < 0.2 + 0.15 * action * (x[:, 0] > 0) - 0.1 * position).astype(float)
    dist = rng.dirichlet(np.ones(k), size=(n, slots)).transpose(0, 2, 1)   # (n, k, slots)
    return dict(reward=reward, action=action, position=position,
                pscore=logging[np.arange(n), action], action_dist=dist, contexts=x)


@pytest.fixture
def files(tmp_path):
    log = make_log()
    table = pa.table({"act": log["action"], "slot": log["position"], "clicked": log["reward"],
                      "prob": log["pscore"], "x1": log["contexts"][:, 0],
                      "x2": log["contexts"][:, 1]})
    pq.write_table(table, tmp_path / "log.parquet")
    pacsv.write_csv(table, tmp_path / "log.csv")
    np.save(tmp_path / "target.npy", log["action_dist"])
    return log, tmp_path


COLS = dict(action_col="act", position_col="slot", reward_col="clicked", propensity_col="prob",
            context_cols=["x1", "x2"])


@pytest.mark.parametrize("name", ["log.parquet", "log.csv"])
def test_files_give_the_same_answer_as_the_arrays(files, name):
    log, tmp = files
    result = run_ope_on_data(tmp / name, tmp / "target.npy", **COLS, n_bootstrap=50)
    direct = run_ope_on_arrays(**log, n_bootstrap=50)
    assert result.names == direct.names
    for a, b in zip(result, direct, strict=True):
        assert (a.estimate, a.low, a.high, a.ess) == pytest.approx((b.estimate, b.low, b.high,
                                                                     b.ess), abs=1e-12)
    assert result.len_list == 2 and result.n_rounds == 600


def test_default_column_names_and_a_two_dimensional_target(tmp_path):
    log = make_log(1, slots=1)
    pq.write_table(pa.table({"action": log["action"], "reward": log["reward"],
                             "propensity": log["pscore"]}), tmp_path / "d.parquet")
    np.save(tmp_path / "t.npy", log["action_dist"][:, :, 0])      # (n, n_actions)
    result = run_ope_on_data(tmp_path / "d.parquet", tmp_path / "t.npy", estimators=["ips"],
                             n_bootstrap=20)
    w = log["action_dist"][np.arange(600), log["action"], 0] / log["pscore"]
    assert result["IPS"].estimate == pytest.approx((w * log["reward"]).mean())


def test_result_outputs(files):
    log, tmp = files
    result = run_ope_on_data(tmp / "log.parquet", tmp / "target.npy", **COLS, n_bootstrap=50)
    table = result.to_table()
    assert table.splitlines()[0].startswith("600 rounds, 4 actions, 2 position(s)")
    for e in result:
        assert e.name in table and f"{e.estimate:.4f}" in table
    assert "--refit-bootstrap" in table          # DM's interval is marked as model-fixed
    rows = [json.loads(line) for line in result.to_json_lines().splitlines()]
    assert [r["name"] for r in rows] == result.names
    for r, e in zip(rows, result, strict=True):
        assert (r["estimate"], r["low"], r["high"], r["effective_sample_size"]) == (
            e.estimate, e.low, e.high, e.ess)
        assert r["confidence"] == 0.95 and r["n_rounds"] == 600
    png = result.plot(tmp / "ope.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_undefined_estimates_become_null_in_json():
    # the target never plays a logged action: SNIPS divides by zero
    dist = np.zeros((3, 2, 1))
    dist[:, 1] = 1.0
    result = run_ope_on_arrays([1.0, 0.0, 1.0], [0, 0, 0], [0.5, 0.5, 0.5], dist,
                               estimators="snips,ips", n_bootstrap=10)
    rows = [json.loads(line) for line in result.to_json_lines().splitlines()]
    assert rows[0]["estimate"] is None and rows[0]["low"] is None
    assert rows[1]["estimate"] == 0.0 and rows[1]["zero_target_share"] == 1.0


def test_ope_command_on_generic_files(files, capsys):
    _, tmp = files
    args = ["ope", "--data", str(tmp / "log.csv"), "--target-dist", str(tmp / "target.npy"),
            "--action-col", "act", "--position-col", "slot", "--reward-col", "clicked",
            "--propensity-col", "prob", "--context-cols", "x1, x2", "--bootstrap", "30"]
    assert main([*args, "--json", "--estimators", "ips,dr,switch-dr:5",
                 "--plot", str(tmp / "p.png")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == ["IPS", "DR", "SwitchDR(tau=5)"]
    assert (tmp / "p.png").stat().st_size > 0
    assert main([*args, "--estimators", "dm", "--refit-bootstrap", "--alpha", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "90% interval" in out and "reward model refit on each" in out
    assert main([*args, "--estimators", "magic"]) == 2
    assert "error: estimators: unknown estimator 'magic'" in capsys.readouterr().err
    assert main(["ope", "--data", str(tmp / "log.csv"), "--target-dist",
                 str(tmp / "target.npy")]) == 2
    assert ("missing column(s) 'action' (from --action-col), 'reward' (from --reward-col), "
            "'propensity' (from --propensity-col)") in capsys.readouterr().err
    assert main(["ope", "--data", str(tmp / "log.csv")]) == 2
    assert "--target-dist: required with --data" in capsys.readouterr().err


def write(tmp_path, name, columns):
    path = tmp_path / name
    pacsv.write_csv(pa.table(columns), path)
    return path


GOOD = {"action": [0, 1, 1], "reward": [1.0, 0.0, 1.0], "propensity": [0.5, 0.5, 0.5]}


@pytest.mark.parametrize(("columns", "target", "options", "message"), [
    ({**GOOD, "propensity": [0.5, 1.5, 0.5]}, None, {},
     "pscore: propensities must lie in (0, 1]; round 1 has 1.5"),
    ({**GOOD, "propensity": [0.5, None, 0.5]}, None, {},
     "data: column 'propensity' (from --propensity-col) has 1 missing value(s), the first in "
     "row 1"),
    ({**GOOD, "action": ["a", "b", "c"]}, None, {},
     "data: column 'action' (from --action-col) must be numeric (got values like "
     "['a', 'b', 'c'])"),
    ({**GOOD, "action": [0, 1, 2]}, None, {},
     "action: indices must lie in [0, 2) (the columns of action_dist); round 2 has 2"),
    (GOOD, None, {"position_col": "slot"}, "data: missing column(s) 'slot' (from --position-col)"),
    (GOOD, None, {"context_cols": ["age"]},
     "data: missing column(s) 'age' (from --context-cols); the file has ['action', "
     "'propensity', 'reward']"),
    ({**GOOD, "age": ["x", "y", "z"]}, None, {"context_cols": ["age"]},
     "data: column 'age' (from --context-cols) must be numeric"),
    (GOOD, np.full((2, 2, 1), 0.5), {},
     "target-dist: has 2 rows, the data file has 3; row i of action_dist must describe row i"),
    (GOOD, np.full((3, 2, 1), 0.6), {},
     "action_dist: probabilities over actions must sum to 1 for every round and position; "
     "round 0, position 0 sums to 1.2"),
    (GOOD, np.full(3, 0.5), {},
     "target-dist: must have shape (n_rounds, n_actions, len_list) or (n_rounds, n_actions) "
     "(got (3,))"),
    ({k: v[:0] for k, v in GOOD.items()}, None, {}, "data: 'd.csv' has no rows"),
])
def test_bad_files_are_named(tmp_path, columns, target, options, message):
    path = write(tmp_path, "d.csv", columns)
    np.save(tmp_path / "t.npy", np.full((3, 2, 1), 0.5) if target is None else target)
    with pytest.raises(OPEInputError) as err:
        run_ope_on_data(path, tmp_path / "t.npy", n_bootstrap=5, **options)
    assert message in str(err.value)


def test_bad_paths_are_named(tmp_path):
    np.save(tmp_path / "t.npy", np.full((3, 2, 1), 0.5))
    good = write(tmp_path, "d.csv", GOOD)
    (tmp_path / "d.json").write_text("{}")
    (tmp_path / "bad.parquet").write_text("not parquet")
    (tmp_path / "t.txt.npy").write_text("not numpy")
    cases = [
        (tmp_path / "missing.csv", tmp_path / "t.npy", "data: no such file"),
        (tmp_path / "d.json", tmp_path / "t.npy", "data: 'd.json' must end in .csv or .parquet"),
        (tmp_path / "bad.parquet", tmp_path / "t.npy", "data: cannot read 'bad.parquet' as parquet"),
        (good, tmp_path / "none.npy", "target-dist: no such file"),
        (good, tmp_path / "t.txt.npy", "target-dist: 't.txt.npy' is not a numpy .npy array"),
    ]
    for data, target, message in cases:
        with pytest.raises(OPEInputError) as err:
            run_ope_on_data(data, target)
        assert message in str(err.value)
