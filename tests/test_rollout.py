"""Safe rollout in simulation: a challenger in shadow, promoted by steps of traffic while its
off-policy estimate on the champion's log beats the champion's, rolled back when the online
A/B test finds it worse; its settings, its log, ``GET /v1/rollout`` and ``loopwise rollout
status``.

The world is a seeded three-armed contextual bandit driven through :class:`Engine` in
process: every request offers the same three items (one-hot features), item k pays 1 with
probability ``means[k]``, and every decision is rewarded at once.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine import Engine
from engine.errors import ValidationError
from engine.featurizer import Featurizer
from engine.rollout import CHALLENGER, LOG_NAME, OffPolicyGap, RolloutConfig
from experiments.cli import main as cli
from experiments.ope import SNIPS
from policies.base import Policy

ITEMS = [{"id": f"i{k}", "features": [float(j == k) for j in range(3)]} for k in range(3)]
GOOD = (0.2, 0.5, 0.8)
N_FEATURES = Featurizer(3, (), 1000).n_features  # the items' 3 and the profile's own


class FavourLast(Policy):
    """A fixed policy: 90% on the last candidate, the rest spread evenly (learns nothing)."""

    def _act(self, phi, mask):
        k = phi.shape[1]
        p = np.full(phi.shape[:2], 0.1 / (k - 1))
        p[:, -1] = 0.9
        return p

    def _update(self, phi, rewards, propensities):
        pass

    def _learn_one(self, x, reward, propensity):
        pass


def simulate(champion, challenger, seed, n_events, means=GOOD, data_dir=None, drift=None,
             **rollout):
    """Run ``n_events`` decisions in batches of 50 over 1000 users; returns the engine's
    rollout report, the largest share the challenger served and the shares step by step.
    ``drift``: the means that take over once the challenger first serves users."""
    clock = [1000.0]
    settings = {"challenger": {"policy": challenger}, "min_events_per_step": 200,
                "check_every": 100, "alpha": 0.1, **rollout}
    eng = Engine(data_dir, policy=champion, item_features=3, seed=seed,
                 clock=lambda: clock[0], rollout=settings)
    rng = np.random.default_rng(seed)
    m = np.array(means, dtype=float)
    shares = [0.0]
    for _ in range(n_events // 50):
        users = rng.integers(0, 1000, 50)
        ds = eng.rank_batch([{"user_id": f"u{u}", "candidates": ITEMS} for u in users])
        paid = rng.random(50) < m[[int(d.chosen[1]) for d in ds]]
        eng.reward_batch([(d.decision_id, float(x)) for d, x in zip(ds, paid, strict=True)])
        clock[0] += 1.0
        if eng.rollout.share != shares[-1]:
            shares.append(eng.rollout.share)
        if drift is not None and eng.rollout.share > 0:
            m = np.array(drift, dtype=float)
    report = eng.rollout_report()
    eng.close()
    return report, max(shares), shares


def test_better_challenger_is_promoted_step_by_step(tmp_path):
    # uniform champion (value 0.5) against linucb, which learns arm 2 (0.8) from its log
    report, top, shares = simulate("uniform", "linucb", 0, 4000, data_dir=tmp_path / "d")
    assert shares == [0.0, 0.1, 0.5, 1.0]
    assert report["state"] == "promoted" and report["share"] == 1.0
    events = [h["event"] for h in report["history"]]
    assert events == ["start", "promote", "promote", "promote"]
    for h in report["history"][1:]:  # each promotion with its reason and its evidence
        assert h["off_policy"]["low"] > 0 and "lower bound" in h["reason"]
    assert report["off_policy"]["difference"] == pytest.approx(0.3, abs=0.05)
    assert report["online"]["difference"] == pytest.approx(0.3, abs=0.06)
    # durably logged: the JSON lines are the history
    lines = (tmp_path / "d" / LOG_NAME).read_text().splitlines()
    assert [json.loads(x)["event"] for x in lines] == events


def test_worse_challenger_never_leaves_shadow():
    # linucb champion (about 0.78) against a uniform challenger (0.5)
    report, top, _ = simulate("linucb", "uniform", 0, 4000)
    assert top == 0.0 and report["state"] == "shadow"
    assert report["off_policy"]["high"] < 0  # confidently worse, off-policy
    assert [h["event"] for h in report["history"]] == ["start"]


def test_challenger_worse_online_is_rolled_back():
    # the challenger's favourite item stops paying as soon as it serves users: its
    # off-policy record (arm 2 paid 0.8) got it the first step; online it is worse
    report, top, shares = simulate("uniform", FavourLast(N_FEATURES), 0, 6000, drift=(0.2, 0.5, 0.0))
    assert top == 0.1 and shares == [0.0, 0.1, 0.0]
    assert report["state"] == "rolled_back" and report["share"] == 0.0
    back = report["history"][-1]
    assert back["event"] == "rollback" and "online A/B" in back["reason"]
    assert back["online"]["high"] < 0


def test_aa_challenger_is_not_promoted_more_often_than_alpha():
    """The same policy (linear Thompson sampling, another seed) as challenger, 20 seeded
    repetitions at alpha 0.1, margin 0. Promotions ~ Binomial(20, p); were p <= 0.1, five or
    more would happen with probability 0.043, so more than 4 fails the test."""
    promoted = [simulate("lints", "lints", seed, 2000)[1] > 0 for seed in range(20)]
    assert sum(promoted) <= 4, promoted


def test_equal_value_challenger_is_not_promoted():
    """Every item pays 0.5, so every policy is worth the same: linucb's weights stray far
    from 1 against a uniform champion, yet its estimate must not clear the gate (20 seeds,
    alpha 0.1: the same binomial bound, at most 4)."""
    promoted = [simulate("uniform", "linucb", seed, 2000, means=(0.5, 0.5, 0.5))[1] > 0
                for seed in range(20)]
    assert sum(promoted) <= 4, promoted


def test_shares_are_sticky_users_only_join_the_challenger():
    eng = Engine(policy="uniform", item_features=3, seed=0, clock=lambda: 1000.0,
                 rollout={"challenger": {"policy": "uniform"}})
    users = [f"u{i}" for i in range(2000)]
    served = []
    for stage, state in [(1, "serving"), (2, "serving"), (3, "promoted")]:
        eng.rollout.stage, eng.rollout.state = stage, state
        served.append({u for u in users if eng.variant_of(u) == CHALLENGER})
        d = eng.rank(sorted(served[-1])[0], ITEMS)
        assert d.variant == CHALLENGER
    assert served[0] <= served[1] <= served[2] == set(users)
    assert [round(len(s) / 2000, 1) for s in served] == [0.1, 0.5, 1.0]
    eng.close()


def test_online_snips_matches_experiments_ope():
    rng = np.random.default_rng(3)
    n = 500
    action = rng.integers(3, size=n)
    reward = (rng.random(n) < np.array(GOOD)[action]).astype(float)
    target = rng.dirichlet(np.ones(3), size=n)
    gap = OffPolicyGap()
    for i in range(n):
        gap.add(target[i, action[i]] / (1 / 3), reward[i])
    e = gap.estimate(0.05)
    offline = SNIPS().estimate_policy_value(reward, action, np.full(n, 1 / 3), target[:, :, None])
    assert e["challenger"] == pytest.approx(offline, rel=1e-12)
    assert e["champion"] == pytest.approx(reward.mean(), rel=1e-12)
    assert e["low"] < e["difference"] < e["high"]


@pytest.mark.parametrize(("settings", "message"), [
    ({"steps": [0.1, 0.5]}, "engine.rollout.challenger: must be a mapping with 'policy'"),
    ({"challenger": {"policy": "linucb", "parms": {}}},
     "engine.rollout.challenger.parms: unknown key"),
    ({"challenger": {"policy": "linucb"}, "steps": [0.5, 0.2, 1.0]}, "engine.rollout.steps"),
    ({"challenger": {"policy": "linucb"}, "steps": [0.1, 0.5]}, "engine.rollout.steps"),
    ({"challenger": {"policy": "linucb"}, "alpha": 1.5}, "engine.rollout.alpha"),
    ({"challenger": {"policy": "linucb"}, "check_every": 0}, "engine.rollout.check_every"),
    ({"challenger": {"policy": "linucb"}, "min_events_per_step": 0},
     "engine.rollout.min_events_per_step"),
    ({"challenger": {"policy": "linucb"}, "margn": 0.1}, "engine.rollout.margn: unknown"),
])
def test_settings_errors_name_the_key(settings, message):
    from engine.config import EngineConfig

    with pytest.raises(ValidationError, match=message.replace(".", r"\.")):
        EngineConfig.from_mapping({"rollout": settings})


def test_bad_challenger_policy_and_variants_are_named():
    with pytest.raises(ValidationError, match=r"rollout\.challenger\.policy"):
        Engine(item_features=3, rollout={"challenger": {"policy": "nope"}})
    with pytest.raises(ValidationError, match=r"rollout\.challenger\.params\.alpha"):
        Engine(item_features=3, rollout={"challenger": {"policy": "linucb",
                                                        "params": {"alpha": -1}}})
    with pytest.raises(ValidationError, match="rollout: needs one variant"):
        RolloutConfig({"policy": "linucb"})  # fine alone
        Engine(item_features=3, variants={"a": {"policy": "uniform"}, "b": {"policy": "uniform"}},
               rollout={"challenger": {"policy": "linucb"}})


def test_rollout_resumes_after_a_restart_and_status_reads_it(tmp_path, capsys):
    data = tmp_path / "d"
    report, _, _ = simulate("uniform", "linucb", 1, 2500, data_dir=data,
                            steps=[0.1, 1.0], min_events_per_step=300)
    assert report["state"] == "serving" and report["share"] == 0.1
    eng = Engine(data, policy="uniform", item_features=3, seed=1, clock=lambda: 5000.0,
                 rollout={"challenger": {"policy": "linucb"}, "min_events_per_step": 300,
                          "check_every": 100, "alpha": 0.1, "steps": [0.1, 1.0]})
    again = eng.rollout_report()
    assert again["state"] == "serving" and again["history"] == report["history"]
    assert again["off_policy"] == report["off_policy"]
    assert eng.rollout.learner.version > 0  # the challenger's policy came back too
    eng.close()
    assert cli(["rollout", "status", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rollout of linucb: serving, serving 10% of users")
    assert "promote" in out and "lower bound" in out
    assert cli(["rollout", "status", "--data-dir", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "serving"


def test_status_errors_in_one_line_and_never_creates(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert cli(["rollout", "status", "--data-dir", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --data-dir: is not a directory") and err.count("\n") == 1
    assert not missing.exists()
    Engine(tmp_path / "plain", policy="uniform", item_features=3).close()
    assert cli(["rollout", "status", "--data-dir", str(tmp_path / "plain")]) == 2
    assert "holds no rollout" in capsys.readouterr().err


def test_http_rollout_route(tmp_path):
    pytest.importorskip("uvicorn")
    from test_http import Server

    s = Server(tmp_path / "d", policy="uniform", seed=0,
               rollout={"challenger": {"policy": "linucb"}, "min_events_per_step": 10})
    try:
        acts = [{"id": f"i{k}", "features": [float(k), 1.0]} for k in range(3)]
        r = s.client.post("/v1/rank", json={"user_id": "u1", "actions": acts})
        assert r.status_code == 200
        body = s.client.get("/v1/rollout").json()
        assert body["state"] == "shadow" and body["share"] == 0.0
        assert body["settings"]["steps"] == [0.1, 0.5, 1.0]
        assert body["history"][0]["event"] == "start"
    finally:
        s.stop()
    plain = Server(tmp_path / "e", policy="uniform")
    try:
        r = plain.client.get("/v1/rollout")
        assert r.status_code == 404 and r.json()["error"]["field"] == "rollout"
    finally:
        plain.stop()


def test_challenger_decisions_pending_at_a_restart_without_the_rollout_are_learned(tmp_path):
    clock = [1000.0]
    settings = {"challenger": {"policy": "uniform"}}
    eng = Engine(tmp_path / "d", policy="linucb", item_features=3, seed=0,
                 clock=lambda: clock[0], rollout=settings)
    eng.rollout.stage, eng.rollout.state = 3, "promoted"  # it serves everyone
    d = eng.rank("u1", ITEMS)
    assert d.variant == CHALLENGER
    eng.close()
    eng = Engine(tmp_path / "d", policy="linucb", item_features=3, seed=0,
                 clock=lambda: clock[0])  # the rollout is gone from the settings
    assert eng.variant_of("u1") == "default"
    before = eng.learners["default"].version
    assert eng.reward(d.decision_id, 1.0).status == "joined"
    assert eng.learners["default"].version == before + 1  # the champion learned it
    eng.close()


def test_shadow_probability_is_logged_with_the_decision_and_survives_a_restart(tmp_path):
    clock = [1000.0]

    def open_engine():
        return Engine(tmp_path / "d", policy="uniform", item_features=3, seed=0,
                      clock=lambda: clock[0], wait_window=60.0,
                      rollout={"challenger": {"policy": "uniform"}})

    eng = open_engine()
    d = eng.rank("u1", ITEMS)
    meta = json.loads(eng.store.decision(d.decision_id)["chosen_meta"])
    assert meta["shadow"] == pytest.approx(1 / 3) and meta["p"] == pytest.approx(1 / 3)
    eng.close()
    eng = open_engine()  # the decision waits again, with its challenger's probability
    assert eng.reward(d.decision_id, 1.0).status == "joined"
    assert eng.rollout_report()["off_policy"]["n"] == 1
    eng.rank("u2", ITEMS)  # never rewarded: its default reward counts when its window closes
    clock[0] += 61.0
    eng.rank("u3", ITEMS)
    gap = eng.rollout_report()["off_policy"]
    assert gap["n"] == 2 and gap["champion"] == 0.5
    eng.close()


@pytest.mark.parametrize(("yaml", "message"), [
    ("  rollout:\n    challenger: {policy: linucb}\n    steps: [0.1, 0.5]\n",
     "error: engine.rollout.steps: must rise strictly to 1.0"),
    ("  rollout:\n    challenger: {policy: thompson}\n",
     "error: engine.rollout.challenger.policy: unknown policy 'thompson'"),
])
def test_serve_yaml_rollout_mistakes_name_the_key(tmp_path, capsys, monkeypatch, yaml, message):
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("engine:\n  policy: uniform\n  item_features: 3\n" + yaml)
    monkeypatch.setenv("LOOPWISE_TOKEN", "t")
    assert cli(["serve", "--config", str(cfg), "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
