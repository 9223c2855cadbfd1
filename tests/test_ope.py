"""Off-policy estimators on the user simulator (`simulators.BatchedRecEnv`, whose `info`
carries every candidate's expected reward): identities, interval coverage against the
exact value of the target, a misspecified reward model, and the `ope`/`export` commands
on the engine's own log. Hand-computed cases and bad input: test_ope_estimators.py; a
synthetic world: test_ope_synthetic.py; files: test_ope_data.py."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from experiments.cli import main
from experiments.ope import (
    IPS,
    Replay,
    default_estimators,
    evaluate,
    run_ope_on_arrays,
    validate,
)
from simulators import BatchedRecEnv, make_config


def softmax(x, beta):
    z = np.exp(beta * (x - x.max(axis=1, keepdims=True)))
    return z / z.sum(axis=1, keepdims=True)


def simulated_log(seed, n=2000):
    """One batch of n simulated users with K = 20 candidates: a softmax logging policy over
    popularity (nearly uniform), a target that strongly prefers popular items (its value is
    about twice the logging policy's), and the exact value of the target."""
    env = BatchedRecEnv(make_config("stationary", n_users=5000), batch_size=n)
    obs = env.reset(seed=seed)
    feats = obs["item_features"].astype(float)
    logging = softmax(feats[:, :, -3], 0.3)
    target = 0.8 * softmax(feats[:, :, -3], 3.0) + 0.2 / 20
    rng = np.random.default_rng(seed + 1000)
    action = (logging.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1).clip(max=19)
    _, reward, info = env.step(action)
    truth = float((target * info["expected_rewards"]).sum(axis=1).mean())
    rows = np.arange(n)
    return dict(reward=reward, action=action, pscore=logging[rows, action],
                action_dist=target[:, :, None], action_context=feats), truth, logging


def test_identity_target_equals_logging_gives_mean_reward():
    log, _, logging = simulated_log(0)
    d = validate(log["reward"], log["action"], log["pscore"], logging[:, :, None])
    assert IPS().estimate(d) == pytest.approx(log["reward"].mean(), abs=1e-12)


def test_identity_deterministic_target_gives_replay_on_matching_rounds():
    rng = np.random.default_rng(0)
    n, k = 3000, 4
    action = rng.integers(k, size=n)
    reward = rng.random(n)
    best = rng.integers(k, size=n)
    dist = np.zeros((n, k, 1))
    dist[np.arange(n), best, 0] = 1.0
    d = validate(reward, action, np.full(n, 1 / k), dist)
    assert Replay().estimate(d) == pytest.approx(reward[action == best].mean())


def test_intervals_cover_the_truth_on_the_simulator():
    """100 seeded repetitions; counts of 95% intervals covering the true value. Then the same
    logs with a misspecified reward model (a constant): DM is biased, DR is not."""
    reps = 100
    names = [e.name for e in default_estimators()]
    covered = dict.fromkeys(names, 0)
    errors = {name: [] for name in names}
    bad_model = {name: [] for name in names}
    for seed in range(reps):
        log, truth, _ = simulated_log(seed)
        for e in run_ope_on_arrays(**log, n_bootstrap=200, seed=seed):
            covered[e.name] += e.low <= truth <= e.high
            errors[e.name].append(e.estimate - truth)
        constant = {**log, "action_context": np.ones((len(log["reward"]), 20, 1))}
        for e in run_ope_on_arrays(**constant, n_bootstrap=20, seed=seed):
            bad_model[e.name].append(e.estimate - truth)
    report = {n: (covered[n], round(float(np.mean(errors[n])), 4),
                  round(float(np.std(errors[n])), 4)) for n in names}
    # unbiased estimators: coverage within 90-99% of repetitions, bias inside the intervals
    for name in ("IPS", "SNIPS", "DR", "SNDR"):
        assert 90 <= covered[name] <= 99, report
        assert abs(np.mean(errors[name])) < 0.5 * np.std(errors[name]) + 1e-3, report
    rmse = {n: float(np.sqrt(np.mean(np.square(bad_model[n])))) for n in names}
    assert rmse["DR"] < 0.5 * rmse["DM"] and rmse["SNDR"] < 0.5 * rmse["DM"], rmse
    assert np.std(bad_model["DR"]) < np.std(bad_model["IPS"]), rmse
    assert np.std(errors["DR"]) < np.std(errors["IPS"]), report


def test_ope_command_on_generic_files(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    log, truth, _ = simulated_log(5, n=1500)
    table = pa.table({"act": log["action"], "r": log["reward"], "p": log["pscore"],
                      "pop": log["action_context"][np.arange(1500), log["action"], -3]})
    pq.write_table(table, tmp_path / "log.parquet")
    np.save(tmp_path / "target.npy", log["action_dist"])
    rc = main(["ope", "--data", str(tmp_path / "log.parquet"), "--target-dist",
               str(tmp_path / "target.npy"), "--action-col", "act", "--reward-col", "r",
               "--propensity-col", "p", "--context-cols", "pop", "--json",
               "--plot", str(tmp_path / "ope.png")])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {x["name"] for x in lines} >= {"IPS", "SNIPS", "DM", "DR", "SNDR"}
    for x in lines:
        assert set(x) >= {"name", "estimate", "low", "high", "effective_sample_size"}
    assert (tmp_path / "ope.png").stat().st_size > 0
    rc = main(["ope", "--data", str(tmp_path / "log.parquet"), "--target-dist",
               str(tmp_path / "target.npy")])
    assert rc == 2
    assert "missing column(s) 'action' (from --action-col)" in capsys.readouterr().err


def test_ope_command_on_an_engine_log(tmp_path, capsys):
    from engine import Engine

    t = [0.0]
    data = tmp_path / "d"
    eng = Engine(data, policy="egreedy", policy_params={"epsilon": 0.3}, item_features=2,
                 clock=lambda: t[0], seed=0)
    rng = np.random.default_rng(0)
    for i in range(400):
        cands = [{"id": f"i{k}", "features": [float(k == 1), rng.random()]} for k in range(4)]
        d = eng.rank(f"u{i % 20}", cands)
        eng.reward(d.decision_id, float(rng.random() < (0.7 if d.chosen == "i1" else 0.2)))
        t[0] += 1
    eng.close()
    assert main(["ope", "--log", str(data), "--policy", "uniform", "--json"]) == 0
    uniform = {x["name"]: x for x in map(json.loads, capsys.readouterr().out.splitlines())}
    truth = (0.7 + 3 * 0.2) / 4
    assert abs(uniform["SNIPS"]["estimate"] - truth) < 0.06
    assert uniform["DR"]["low"] < truth < uniform["DR"]["high"]
    assert main(["ope", "--log", str(data), "--policy", "saved:default", "--json"]) == 0
    saved = {x["name"]: x for x in map(json.loads, capsys.readouterr().out.splitlines())}
    assert saved["SNIPS"]["estimate"] > uniform["SNIPS"]["estimate"] + 0.2
    assert main(["export", "--log", str(data), "--format", "dsjson",
                 "--out", str(tmp_path / "x.json")]) == 0
    assert "400 decisions written" in capsys.readouterr().out


def test_diagnostics():
    log, _, _ = simulated_log(1, n=500)
    d = validate(log["reward"], log["action"], log["pscore"], log["action_dist"])
    est = evaluate(d, [IPS()], n_bootstrap=50)[0]
    w = d.weights()
    assert est.ess == pytest.approx(w.sum() ** 2 / (w ** 2).sum())
    assert est.max_weight == pytest.approx(w.max()) and est.zero_target_share == 0.0


def _engine_log(data, policy, params, n=400):
    from engine import Engine

    t = [0.0]
    eng = Engine(data, policy=policy, policy_params=params, item_features=2,
                 clock=lambda: t[0], seed=0)
    rng = np.random.default_rng(0)
    for i in range(n):
        cands = [{"id": f"i{k}", "features": [float(k == 1), rng.random()]} for k in range(4)]
        d = eng.rank(f"u{i % 20}", cands)
        eng.reward(d.decision_id, float(rng.random() < (0.7 if d.chosen == "i1" else 0.2)))
        t[0] += 1
    eng.close()


def test_ope_log_trains_a_named_policy_progressively_and_warns_on_replay(tmp_path, capsys):
    data = tmp_path / "d"
    _engine_log(data, "egreedy", {"epsilon": 0.3})
    assert main(["ope", "--log", str(data), "--policy", "lints", "--estimators", "replay,snips",
                 "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "lints: trained on the log by progressive validation (each round scored before it " \
           "learns it)" in out
    assert "warning: Replay: the log was not uniformly logged" in out
    snips = float(next(line.split()[1] for line in out.splitlines()
                       if line.startswith("SNIPS")))
    # an untrained LinTS picks about at random (0.325); trained, it finds i1 (0.7)
    assert snips > 0.5
    # beside it, Personalizer's references: the logged policy (its SNIPS is the mean logged
    # reward), the baseline (always i0: worth 0.2) and random (worth 0.325)
    ref = next(line for line in out.splitlines() if line.startswith("for reference"))
    got = {m[0]: tuple(map(float, m[1:])) for m in re.findall(
        r"(\w+) ([-\d.]+) \[([-\d.]+), ([-\d.]+)\]", ref)}
    from engine.storeview import StoreView
    view = StoreView(data)
    mean = view.db.execute("SELECT AVG(reward) FROM decisions WHERE status = 'joined'").fetchone()[0]
    view.close()
    assert got["logged"][0] == pytest.approx(mean, abs=1e-4)
    assert got["baseline"][1] < 0.2 < got["baseline"][2]
    assert got["random"][1] < 0.325 < got["random"][2]
    assert main(["ope", "--log", str(data), "--policy", "saved:default", "--json",
                 "--estimators", "replay", "--bootstrap", "20"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert "scored as saved (not retrained)" in line["notes"][1]
    assert line["warning"].startswith("the log was not uniformly logged")


def test_replay_carries_no_warning_on_a_uniform_log(tmp_path, capsys):
    data = tmp_path / "d"
    _engine_log(data, "uniform", {}, n=150)
    assert main(["ope", "--log", str(data), "--policy", "uniform", "--estimators", "replay",
                 "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert "Replay" in out and not any(x.startswith("warning:") for x in out.splitlines())
