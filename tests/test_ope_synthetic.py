"""Off-policy estimators against a seeded synthetic logged-bandit world whose true target
value is known exactly: interval coverage over seeded repetitions, bias, a misspecified
reward model, and the identities with the logging policy as target.

The world: 50 context prototypes x in R^2 (drawn uniformly per round), 5 actions, 2 slots
(drawn uniformly). Expected reward ``q(x, a, k) = 0.5 + c_a + 0.35 s_a h(x) - 0.1 k`` with
``h(x) = tanh(3 x1 x2)`` and signs ``s_a = +1, -1, +1, ...``, so the best action depends
on the product x1 x2, which no model linear in x can represent. Rewards are Bernoulli(q).
The logging policy is a softmax over random linear scores of x (per slot); the target
mixes a softmax of ``5 q`` with 20% uniform. The true value is the exact average of
``sum_a pi(a | x, k) q(x, a, k)`` over prototypes and slots.
"""

from __future__ import annotations

import numpy as np
import pytest

from experiments.ope import IPS, SNIPS, Replay, run_ope_on_arrays, validate

K, L, M = 5, 2, 50


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class World:
    def __init__(self, seed: int = 0, uniform_logging: bool = False):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(M, 2))
        self.h = np.tanh(3 * self.x[:, 0] * self.x[:, 1])
        sign = np.where(np.arange(K) % 2 == 0, 1.0, -1.0)
        base = 0.5 + rng.uniform(-0.05, 0.05, size=K) + 0.35 * sign * self.h[:, None]
        self.q = base[:, :, None] - 0.1 * np.arange(L)                     # (M, K, L)
        logits = ((self.x @ rng.normal(size=(2, K)) * 0.5)[:, :, None]
                  + 0.3 * rng.normal(size=(1, K, L)))
        self.logging = np.full((M, K, L), 1 / K) if uniform_logging else softmax(logits)
        self.target = 0.8 * softmax(5 * self.q) + 0.2 / K
        self.truth = float((self.target * self.q).sum(axis=1).mean())
        self.logging_value = float((self.logging * self.q).sum(axis=1).mean())

    def sample(self, n: int, seed: int):
        """A log of n rounds: the estimator inputs, and each round's prototype index."""
        rng = np.random.default_rng(seed)
        m = rng.integers(M, size=n)
        pos = rng.integers(L, size=n)
        p = self.logging[m, :, pos]
        action = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1).clip(max=K - 1)
        reward = (rng.random(n) < self.q[m, action, pos]).astype(float)
        log = dict(reward=reward, action=action, position=pos,
                   pscore=p[np.arange(n), action], action_dist=self.target[m])
        return log, m


WORLD = World(0)


def repeat(world, reps, n, contexts, **kwargs):
    """Errors against the truth and interval coverage of every estimator over seeded logs."""
    errors, low, high, covered = {}, {}, {}, {}
    for seed in range(reps):
        log, m = world.sample(n, seed)
        ctx = {"x": world.x[m], "x,h": np.c_[world.x[m], world.h[m]], None: None}[contexts]
        for e in run_ope_on_arrays(**log, contexts=ctx, seed=seed, **kwargs):
            errors.setdefault(e.name, []).append(e.estimate - world.truth)
            low.setdefault(e.name, []).append(e.low - world.truth)
            high.setdefault(e.name, []).append(e.high - world.truth)
            covered[e.name] = covered.get(e.name, 0) + int(e.low <= world.truth <= e.high)
    return ({k: np.array(v) for k, v in errors.items()}, {k: np.mean(v) for k, v in low.items()},
            {k: np.mean(v) for k, v in high.items()}, covered)


def summary(errors, covered, reps):
    return {k: f"covered {covered.get(k, '-')}/{reps}, bias {v.mean():+.4f}, sd {v.std():.4f}, "
               f"rmse {np.sqrt(np.mean(v ** 2)):.4f}" for k, v in errors.items()}


def test_the_world_is_what_the_tests_need():
    # the target is much better than the logging policy; weights are bounded
    assert WORLD.truth > WORLD.logging_value + 0.1
    w = WORLD.target / WORLD.logging
    assert 5 < w.max() < 30


def test_intervals_cover_the_truth_with_a_correct_model():
    """200 seeded logs of 1,000 rounds, 200 bootstrap resamples each, reward model given
    (x, h(x)) so it can represent the truth: the 95% intervals of the unbiased estimators
    cover the true value in 90-99% of repetitions, and the bias of every estimator is inside
    its average interval."""
    reps = 200
    errors, low, high, covered = repeat(WORLD, reps, 1000, "x,h", n_bootstrap=200)
    report = summary(errors, covered, reps)
    for name in ("IPS", "SNIPS", "DR", "SNDR", "SwitchDR(tau=10)", "DR-OS(lambda=100)"):
        assert 180 <= covered[name] <= 198, (name, report)
    for name in ("IPS", "SNIPS", "DR", "SNDR"):            # unbiased or consistent
        half = (high[name] - low[name]) / 2
        assert abs(errors[name].mean()) < 0.2 * half, (name, report)
    for name, err in errors.items():
        assert low[name] < err.mean() < high[name] and low[name] < 0 < high[name], (name, report)
    # a correct model makes DR less variable than IPS
    assert errors["DR"].std() < 0.7 * errors["IPS"].std(), report


def test_refit_bootstrap_gives_dm_an_honest_interval():
    """Holding the reward model fixed leaves its estimation error out of DM's interval;
    refitting it on every resample restores coverage (60 logs of 1,000 rounds)."""
    reps = 60
    kwargs = dict(estimators="dm,dr", n_bootstrap=50)
    _, _, _, fixed = repeat(WORLD, reps, 1000, "x,h", **kwargs)
    errors, _, _, refit = repeat(WORLD, reps, 1000, "x,h", refit_bootstrap=True, **kwargs)
    report = (summary(errors, refit, reps), fixed)
    assert fixed["DM"] < 0.5 * reps, report
    assert refit["DM"] >= 0.9 * reps and refit["DR"] >= 0.9 * reps, report


def test_dr_family_beats_dm_under_a_misspecified_model():
    """The reward model sees x only (linear per action), so it cannot represent h(x): DM is
    badly biased, while the DR family corrects it and stays less variable than IPS."""
    reps = 100
    errors, _, _, _ = repeat(WORLD, reps, 1000, "x", n_bootstrap=1)
    report = summary(errors, {}, reps)
    rmse = {k: float(np.sqrt(np.mean(v ** 2))) for k, v in errors.items()}
    assert rmse["DM"] > 0.1, report
    for name in ("DR", "SNDR", "SwitchDR(tau=10)", "DR-OS(lambda=100)"):
        assert rmse[name] < 0.3 * rmse["DM"], (name, report)
    for name in ("DR", "SNDR"):
        assert errors[name].std() < 0.85 * errors["IPS"].std(), (name, report)


def test_replay_covers_under_uniform_logging():
    world = World(0, uniform_logging=True)
    reps = 100
    errors, _, _, covered = repeat(world, reps, 1000, None, estimators="replay,ips,snips",
                                   n_bootstrap=200)
    assert 90 <= covered["Replay"] <= 99, summary(errors, covered, reps)


def test_target_equal_to_logging_gives_ips_equal_to_the_mean_reward():
    log, m = WORLD.sample(2000, 0)
    log["action_dist"] = WORLD.logging[m]
    d = validate(**log)
    assert IPS().estimate(d) == pytest.approx(log["reward"].mean(), abs=1e-12)
    assert SNIPS().estimate(d) == pytest.approx(log["reward"].mean(), abs=1e-12)


def test_deterministic_target_gives_replay_on_matching_rounds():
    log, _ = WORLD.sample(2000, 1)
    best = log["action_dist"].argmax(axis=1)                  # (n, L): the greedy target
    det = np.zeros_like(log["action_dist"])
    np.put_along_axis(det, best[:, None, :], 1.0, axis=1)
    log["action_dist"] = det
    match = best[np.arange(2000), log["position"]] == log["action"]
    assert Replay().estimate(validate(**log)) == pytest.approx(log["reward"][match].mean(),
                                                               abs=1e-12)


if __name__ == "__main__":  # the figures behind the assertions: python tests/test_ope_synthetic.py
    print(f"truth {WORLD.truth:.4f}, logging policy's value {WORLD.logging_value:.4f}, "
          f"largest weight {(WORLD.target / WORLD.logging).max():.1f}")
    runs = [("correct model (x, h), reward model fixed: 200 logs x 1000 rounds, B=200",
             WORLD, (200, 1000, "x,h"), dict(n_bootstrap=200)),
            ("misspecified model (x only): 100 logs x 1000 rounds, point estimates",
             WORLD, (100, 1000, "x"), dict(n_bootstrap=1)),
            ("correct model, reward model refit: 60 logs x 1000 rounds, B=50",
             WORLD, (60, 1000, "x,h"), dict(n_bootstrap=50, estimators="dm,dr",
                                            refit_bootstrap=True)),
            ("uniform logging: 100 logs x 1000 rounds, B=200", World(0, uniform_logging=True),
             (100, 1000, None), dict(n_bootstrap=200, estimators="replay,ips,snips"))]
    for title, world, args, kwargs in runs:
        errors, _, _, covered = repeat(world, *args, **kwargs)
        print(title)
        covered = covered if kwargs["n_bootstrap"] > 1 else {}      # no interval to count
        for name, line in summary(errors, covered, args[0]).items():
            print(f"  {name:<20}{line}")
