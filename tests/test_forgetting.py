"""Forgetting: policies follow a change of the reward itself, and lose almost nothing when
there is none.

Known answers with fixed seeds and margins that a policy without forgetting (or a broken
one) misses: a planted linear model that flips sign half way, the same stream without the
flip, the change detector on both, exact save/load of the forgetting state, and the algebra
of a mini-batch against the same records one at a time.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from policies import make
from policies.forgetting import Forgetting
from policies.lints import LinTS
from policies.thompson import psd_root

D, K = 8, 10
LINEAR = ["egreedy", "linucb", "squarecb", "lints"]
BEFORE, AFTER = 3000, 1500  # records before the flip; records it has to recover in


def planted_stream(policy, n_before=BEFORE, n_after=AFTER, seed=0, flip=True):
    """The policy decides among K candidates x ~ N(0, I) with mean reward ``x . theta``
    (Gaussian noise 0.5); ``theta`` changes sign after ``n_before`` records when ``flip``.
    Returns the mean reward of what it chose per record (expected, not sampled)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=D) / np.sqrt(D)
    draw = np.random.default_rng(seed + 1)
    means = np.empty(n_before + n_after)
    for t in range(n_before + n_after):
        if flip and t == n_before:
            theta = -theta
        x = rng.normal(size=(1, K, D))
        mu = x[0] @ theta
        probs = policy.act(x)
        c = min(int((probs[0].cumsum() < draw.random()).sum()), K - 1)
        policy.learn_one(x[0, c], float(mu[c] + 0.5 * draw.normal()), float(probs[0, c]))
        means[t] = mu[c]
    return means


@pytest.mark.parametrize("name", LINEAR)
def test_each_linear_policy_recovers_a_flipped_model_and_a_stationary_one_cannot(name):
    # pre-flip level about 1.0 (uniform earns 0); just after the flip every policy earns
    # about -0.7; within 1,500 records the default policy is back above 85% of its level
    # (it reaches about 100%), the stationary one stays near -1
    for seed in (0, 1):
        got = planted_stream(make(name, n_features=D, seed=seed), seed=seed)
        stale = planted_stream(make(name, n_features=D, seed=seed, half_life=None), seed=seed)
        level = got[BEFORE - 500:BEFORE].mean()
        assert level > 0.85
        assert got[BEFORE:BEFORE + 300].mean() < 0, "the flip must cost something at first"
        assert got[-500:].mean() > 0.85 * level, (name, seed, got[-500:].mean(), level)
        assert stale[-500:].mean() < -0.5, (name, seed, stale[-500:].mean())


@pytest.mark.parametrize("name", LINEAR)
def test_forgetting_costs_at_most_one_percent_on_a_stationary_stream(name):
    on = planted_stream(make(name, n_features=D, seed=2), 6000, 0, seed=2, flip=False)
    off = planted_stream(make(name, n_features=D, seed=2, half_life=None), 6000, 0, seed=2,
                         flip=False)
    assert on.mean() >= 0.99 * off.mean(), (name, on.mean(), off.mean())


def test_the_detector_fires_on_a_planted_change_and_stays_quiet_without_one():
    for seed in (0, 1, 2):
        changed = make("lints", n_features=D, seed=seed)
        planted_stream(changed, seed=seed)
        assert changed.drift_detections >= 1, seed
        quiet = make("lints", n_features=D, seed=seed)
        planted_stream(quiet, seed=seed, flip=False)
        assert quiet.drift_detections == 0, seed
        assert make("lints", n_features=D, half_life=None).drift_detections == 0


def test_the_detector_fires_soon_after_the_change():
    p = make("lints", n_features=D, seed=0)
    seen = []
    rng = np.random.default_rng(0)
    theta = rng.normal(size=D) / np.sqrt(D)
    for t in range(2 * BEFORE):  # a regression stream (no decisions) whose model flips
        x = rng.normal(size=D)
        p.learn_one(x, float(x @ (theta if t < BEFORE else -theta) + 0.5 * rng.normal()), 1.0)
        seen.append(p.drift_detections)
    first = seen.index(1)
    assert BEFORE <= first < BEFORE + 100 and seen[-1] == 1, first


def test_a_detection_forgets_faster_for_a_while_then_returns_to_the_slow_rate():
    f = Forgetting(n_features=2, rate=np.log(2) / 1000, drift_factor=60.0, period=100)
    assert f.next_record(2.0)[0] == pytest.approx(2 ** (-1 / 1000))
    f.fast_left = 100  # as a detection leaves it
    lams = [f.next_record(2.0)[0] for _ in range(101)]
    np.testing.assert_allclose(lams[:100], 2 ** (-60 / 1000))
    assert lams[100] == pytest.approx(2 ** (-1 / 1000))
    np.testing.assert_allclose(np.prod(lams[:100]), 2.0 ** -6)  # old records: 1/64 left


def trained_through_a_detection(name="lints", **params):
    p = make(name, n_features=D, seed=3, **params)
    rng = np.random.default_rng(3)
    theta = rng.normal(size=D)
    for t in range(1400):  # the change at 1,000; detected; still forgetting fast at the end
        x = rng.normal(size=D)
        p.learn_one(x, float(x @ (theta if t < 1000 else -theta) + rng.normal()), 0.5)
    assert p.drift_detections == 1 and p._forget.fast_left > 0
    return p


def continue_both(p, q, n=300):
    rng = np.random.default_rng(9)
    for _ in range(n):
        phi = rng.normal(size=(1, K, D))
        pa, qa = p.act(phi), q.act(phi)
        np.testing.assert_array_equal(pa, qa)
        c = int(pa[0].argmax())
        r = float(rng.normal())
        p.learn_one(phi[0, c], r, pa[0, c])
        q.learn_one(phi[0, c], r, qa[0, c])
    assert p._forget == q._forget and p.drift_detections == q.drift_detections


@pytest.mark.parametrize("name", LINEAR)
def test_save_load_round_trips_the_forgetting_state_exactly(name):
    p = trained_through_a_detection(name)
    q = make(name, n_features=D, seed=11).load_state_dict(copy.deepcopy(p.state_dict()))
    assert q._forget == p._forget and q._forget is not p._forget
    np.testing.assert_array_equal(q._a, p._a)
    assert q._since_resync == p._since_resync
    continue_both(p, q)
    continue_both(p, pickle.loads(pickle.dumps(p)))


def test_a_state_saved_before_forgetting_still_loads():
    old = make("lints", n_features=D, seed=0, half_life=None)
    planted_stream(old, 200, 0, flip=False)
    sd = old.state_dict()
    for key in ("_forget", "_since_resync"):  # what older versions lacked
        del sd["state"][key]
    for name in ("half_life", "drift_factor", "drift_period"):
        del sd["params"][name]
    sd["params"]["discount"] = 1.0
    q = make("lints", n_features=D, seed=0, half_life=None).load_state_dict(sd)
    continue_both(old, q)
    pickled = dict(old.__dict__)  # an old pickle: no forgetting attributes at all
    for key in ("_forget", "_since_resync", "half_life", "drift_factor", "drift_period"):
        del pickled[key]
    pickled["discount"] = 1.0
    r = LinTS.__new__(LinTS)
    r.__setstate__(copy.deepcopy(pickled))
    assert r.half_life is None and r.drift_detections == 0
    continue_both(old, r)


@pytest.mark.parametrize("half_life", [50.0, None])
def test_a_state_saved_with_single_records_kept_aside_adds_them_to_the_precision(half_life):
    # an earlier layout added single records to A only at a resync: A^-1 and b had them,
    # A did not; the records waited in _pending, each with (1 / s, refresh / s, j) under
    # forgetting (s the product of the factors so far, kept in _pending_scale)
    p = make("lints", n_features=D, seed=0, half_life=half_life)
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=D) for _ in range(100)]  # no resync, no detection (still quiet)
    for x in xs:
        p.learn_one(x, float(rng.normal()), 0.5)
    lam = 0.5 ** (1 / half_life) if half_life else 1.0
    scales = lam ** np.arange(1, 101)
    refresh = (1.0 - lam) * p.l2 * D
    old = dict(copy.deepcopy(p.__dict__), _a=np.eye(D) * p.l2, _pending=xs,
               _pending_forget=[(1 / s, refresh / s, t % D) for t, s in enumerate(scales)]
               if half_life else [], _pending_scale=scales[-1] if half_life else 1.0)
    del old["_since_resync"]
    q = LinTS.__new__(LinTS)
    q.__setstate__(copy.deepcopy(old))
    np.testing.assert_allclose(q.precision(), p.precision(), rtol=1e-10, atol=1e-12)
    assert q._since_resync == 100 and "_pending" not in q.__dict__
    phi = np.random.default_rng(9).normal(size=(300, 1, K, D))
    for t in range(300):  # the same decisions on (crossing a resync, rounding apart)
        pa, qa = p.act(phi[t]), q.act(phi[t])
        np.testing.assert_allclose(pa, qa, atol=1e-9)
        p.learn_one(phi[t, 0, t % K], 1.0, pa[0, t % K])
        q.learn_one(phi[t, 0, t % K], 1.0, pa[0, t % K])
    sd = p.state_dict()
    sd["state"] = {k: old[k] for k in ("_a", "_a_inv", "_b", "_theta", "_forget", "_pending",
                                       "_pending_forget", "_pending_scale")}
    r = make("lints", n_features=D, seed=0, half_life=half_life).load_state_dict(sd)
    np.testing.assert_allclose(r.precision(), np.linalg.inv(r._a_inv), rtol=1e-6, atol=1e-9)
    assert r._since_resync == 100 and "_pending_forget" not in r.__dict__


def test_a_mini_batch_learns_the_model_the_same_records_learn_one_at_a_time():
    rng = np.random.default_rng(5)
    x, r = rng.normal(size=(700, D)), rng.normal(size=700)
    one = make("lints", n_features=D, half_life=200, l2=0.5)
    many = make("lints", n_features=D, half_life=200, l2=0.5)
    for i in range(700):  # crosses resyncs (A^-1 recomputed from A)
        one.update(x[i:i + 1], r[i:i + 1], np.ones(1))
    for first in range(0, 700, 100):
        many.update(x[first:first + 100], r[first:first + 100], np.ones(100))
    assert one.drift_detections == many.drift_detections == 0
    np.testing.assert_allclose(one.precision(), many.precision(), rtol=1e-10)
    np.testing.assert_allclose(one._a_inv, many._a_inv, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(one.theta, many.theta, rtol=1e-8, atol=1e-12)
    assert one._forget.clock == pytest.approx(many._forget.clock)


def test_lints_samples_the_forgotten_posterior_it_reports():
    # with forgetting, LinTS's draws come from the current A^-1 (the posterior it has now):
    # one decision from x A^-1 x^T, a batch from the factor of A^-1 after the last record
    p = make("lints", n_features=D, seed=4, half_life=50)
    rng = np.random.default_rng(4)
    for t in range(300):
        phi = rng.normal(size=(2, D + 4, D))
        p.act(phi)
        assert not np.triu(p._root, 1).any()  # the lower Cholesky factor of the current A^-1
        np.testing.assert_allclose(p._root, psd_root(p._a_inv), rtol=1e-9, atol=1e-15)
        p.learn_one(phi[0, t % (D + 4)], float(rng.random() < 0.3), 0.5)
    np.testing.assert_allclose(p._a_inv, np.linalg.inv(p.precision()), rtol=1e-6, atol=1e-9)


def test_covariance_stays_bounded_in_directions_no_record_excites():
    p = make("lints", n_features=D, seed=0, half_life=20)
    x = np.zeros(D)
    x[0] = 1.0
    for _ in range(5000):  # only feature 0 is ever seen; plain RLS would reach 2^250
        p.learn_one(x, 1.0, 1.0)
    diag = np.diag(p._a_inv)[1:]
    assert np.isfinite(diag).all() and diag.max() < 2.0  # l2 = 1: the prior's 1, give or take
    assert abs(p.theta[0] - 1.0) < 0.05


def test_neural_ts_forgets_in_its_head_and_its_buffer():
    kw = {"hidden": 8, "train_every": 64, "batch_size": 32, "train_steps": 20, "seed": 0}
    rng = np.random.default_rng(0)
    theta = np.array([1.0, -1.0, 0.5])
    models = {"on": make("neural_ts", n_features=3, half_life=300, **kw),
              "off": make("neural_ts", n_features=3, half_life=None, **kw)}
    for t in range(3000):
        x = rng.normal(size=(1, 3))
        y = x @ (theta if t < 1500 else -theta) + 0.1 * rng.normal(size=1)
        for p in models.values():
            p.update(x, y, np.ones(1))
    test = rng.normal(size=(500, 3))
    corr = {k: np.corrcoef(p.predict(test), test @ -theta)[0, 1] for k, p in models.items()}
    assert corr["on"] > 0.8 and corr["off"] < 0.5, corr
    weights = np.exp(models["on"]._stamp[:models["on"]._filled] - models["on"]._forget.clock)
    assert weights.max() == pytest.approx(1.0) and weights.min() < 1e-3
