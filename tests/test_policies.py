"""One contract suite over every policy, discovered from the registry.

A policy class can skip a check only by naming it in its ``opt_out`` with the reason.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import numpy as np
import pytest

import policies
from policies import Policy, available, make

D, K = 4, 6
# tiny networks keep the neural policy's tests fast
SMALL = {"neural_ts": {"hidden": 8, "train_every": 32, "batch_size": 16, "n_draws": 32}}
ALL = available()


def build(name, seed=0):
    return make(name, n_features=D, seed=seed, **SMALL.get(name, {}))


def batch(seed=0, b=3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(b, K, D)).astype(dtype)
    mask = rng.random((b, K)) < 0.7
    mask[:, 0] = True
    return phi, mask


def train(p, n=64, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    return p.update(x, (x[:, 0] > 0).astype(float), np.full(n, 0.5))


def skip_if_opted_out(p, check):
    if check in p.opt_out:
        pytest.skip(f"{type(p).__name__} opts out of {check}: {p.opt_out[check]}")


def test_every_policy_class_is_reachable_by_name():
    classes = set()
    for mod in pkgutil.iter_modules(policies.__path__):
        module = importlib.import_module(f"policies.{mod.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Policy) and obj is not Policy \
                    and obj.__module__ == module.__name__ and "_act" in obj.__dict__:
                classes.add(obj)
    reachable = {type(build(name)) for name in ALL}
    assert classes and classes <= reachable, classes - reachable


@pytest.mark.parametrize("name", ALL)
def test_probabilities_are_a_distribution_over_unmasked(name):
    p = train(build(name))
    phi, mask = batch()
    probs = p.act(phi, mask)
    assert probs.shape == mask.shape and probs.dtype == np.float64
    assert (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert (probs[~mask] == 0).all()
    assert p.act(phi[:1, :1]).tolist() == [[1.0]]  # a lone candidate is certain


@pytest.mark.parametrize("name", ALL)
def test_propensities_are_honest(name):
    """No valid candidate gets 0, so no randomized choice is reported as certain."""
    p = train(build(name))
    skip_if_opted_out(p, "positive_probabilities")
    phi, mask = batch(seed=3, b=8)
    probs = p.act(phi, mask)
    several = mask.sum(axis=1) > 1
    assert (probs[mask] > 0).all() and (probs[several] < 1).all()


@pytest.mark.parametrize("name", ALL)
def test_float32_int_and_float64_inputs(name):
    p = train(build(name, seed=2))
    phi, mask = batch(dtype=np.float32)
    for x in (phi, phi.astype(np.float64), np.rint(phi).astype(np.int64)):
        probs = p.act(x, mask)
        assert probs.dtype == np.float64
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    p.update(np.ones((2, D), dtype=np.float32), np.ones(2, dtype=np.float32), [0.5, 1])


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_actions(name):
    phi, mask = batch()
    a, b = train(build(name, seed=3)), train(build(name, seed=3))
    for _ in range(2):
        np.testing.assert_array_equal(a.act(phi, mask), b.act(phi, mask))
        np.testing.assert_array_equal(a.act(phi[:1]), b.act(phi[:1]))


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip_resumes_exactly(name):
    p = train(build(name, seed=5))
    sd = p.state_dict()
    q = build(name, seed=5).load_state_dict(sd)
    assert q.version == p.version == 1
    skip_if_opted_out(p, "save_load_same_actions")
    phi, mask = batch(seed=2)
    np.testing.assert_array_equal(p.act(phi, mask), q.act(phi, mask))
    np.testing.assert_array_equal(p.act(phi[:1]), q.act(phi[:1]))
    train(p, seed=9), train(q, seed=9)  # learning continues identically
    np.testing.assert_array_equal(p.act(phi, mask), q.act(phi, mask))
    # a state dict is a snapshot: learning after saving does not change it
    r = build(name, seed=5).load_state_dict(sd)
    assert r.version == 1


@pytest.mark.parametrize("name", ALL)
def test_pickle_round_trip(name):
    p = train(build(name, seed=7))
    q = pickle.loads(pickle.dumps(p))
    assert q.get_params() == p.get_params() and q.version == p.version
    skip_if_opted_out(p, "save_load_same_actions")
    phi, mask = batch(seed=4)
    np.testing.assert_array_equal(p.act(phi, mask), q.act(phi, mask))
    train(p, seed=8), train(q, seed=8)
    np.testing.assert_array_equal(p.act(phi, mask), q.act(phi, mask))


@pytest.mark.parametrize("name", ALL)
def test_clone_is_fresh_with_the_same_params(name):
    p = train(build(name, seed=4))
    q = p.clone()
    assert type(q) is type(p) and q.get_params() == p.get_params()
    assert q.version == 0 and p.version == 1
    phi, mask = batch(seed=5)
    np.testing.assert_array_equal(q.act(phi, mask), build(name, seed=4).act(phi, mask))


@pytest.mark.parametrize("name", ALL)
def test_update_and_act_do_not_mutate_inputs(name):
    p = build(name)
    rng = np.random.default_rng(0)
    x, r, prop = rng.normal(size=(40, D)), rng.random(40), np.full(40, 0.25)
    copies = [a.copy() for a in (x, r, prop)]
    assert p.update(x, r, prop) is p
    for a, c in zip((x, r, prop), copies, strict=True):
        np.testing.assert_array_equal(a, c)
    phi, mask = batch()
    phi[~mask] = np.nan  # garbage on masked candidates is allowed and left alone
    phi_c, mask_c = phi.copy(), mask.copy()
    probs = p.act(phi, mask)
    np.testing.assert_array_equal(phi, phi_c)
    np.testing.assert_array_equal(mask, mask_c)
    assert np.isfinite(probs).all()


@pytest.mark.parametrize("name", ALL)
def test_version_counts_updates(name):
    p = build(name)
    assert p.version == 0
    train(p, n=3), train(p, n=1)
    p.update(np.zeros((0, D)), np.zeros(0), np.zeros(0))  # nothing to apply
    assert p.version == 2


BAD_ACT = [
    ((np.zeros((2, 3)), None), ValueError, r"^phi: must have shape \(B, K, 4\) \(got \(2, 3\)\)"),
    ((np.zeros((2, 3, 5)), None), ValueError, r"^phi: must have shape \(B, K, 4\)"),
    ((np.zeros((0, 3, D)), None), ValueError, r"^phi: needs at least one decision"),
    ((np.full((2, 3, D), "a"), None), TypeError, r"^phi: must be a numeric array"),
    ((np.full((1, 2, D), np.nan), None), ValueError, r"^phi: must be finite"),
    ((np.zeros((2, 3, D)), np.ones((3, 2), dtype=bool)), ValueError,
     r"^mask: must have shape \(2, 3\)"),
    ((np.zeros((2, 3, D)), np.ones((2, 3))), TypeError, r"^mask: must be boolean \(got dtype float64\)"),
    ((np.zeros((2, 3, D)), np.array([[True, False, False], [False, False, False]])), ValueError,
     "^mask: row 1 has no valid candidate"),
]
BAD_UPDATE = [
    ((np.zeros((2, 3)), np.zeros(2), np.ones(2)), ValueError, r"^phi: must have shape \(N, 4\)"),
    ((np.zeros((2, D)), np.zeros(3), np.ones(2)), ValueError, r"^rewards: must have shape \(2,\)"),
    ((np.zeros((2, D)), np.zeros(2), np.ones(1)), ValueError,
     r"^propensities: must have shape \(2,\)"),
    ((np.zeros((2, D)), np.zeros(2), np.array([0.5, 0.0])), ValueError,
     r"^propensities: must lie in \(0, 1\] \(got min 0.0"),
    ((np.zeros((2, D)), np.zeros(2), np.array([0.5, 1.5])), ValueError,
     r"^propensities: must lie in \(0, 1\]"),
    ((np.zeros((1, D)), np.array([np.inf]), np.ones(1)), ValueError, "^rewards: must be finite"),
    ((np.full((1, D), np.nan), np.zeros(1), np.ones(1)), ValueError, "^phi: must be finite"),
    ((np.zeros((1, D)), np.array(["x"]), np.ones(1)), TypeError, "^rewards: must be a numeric"),
]


@pytest.mark.parametrize("name", ALL)
def test_bad_inputs_raise_errors_that_name_the_argument(name):
    p = build(name)
    for args, exc, message in BAD_ACT:
        with pytest.raises(exc, match=message):
            p.act(*args)
    for args, exc, message in BAD_UPDATE:
        with pytest.raises(exc, match=message):
            p.update(*args)
    assert p.version == 0  # nothing was half-applied


@pytest.mark.parametrize(("name", "params", "message"), [
    ("lints", {"v": -1.0}, "v: must be > 0.0 (got -1.0)"),
    ("lints", {"n_draws": 0}, "n_draws: must be >= 1 (got 0)"),
    ("lints", {"n_draws": 2.5}, "n_draws: must be an integer (got 2.5)"),
    ("egreedy", {"epsilon": 1.5}, "epsilon: must be <= 1.0 (got 1.5)"),
    ("linucb", {"alpha": float("nan")}, "alpha: must be a finite number (got nan)"),
    ("squarecb", {"gamma_scale": 0}, "gamma_scale: must be > 0.0 (got 0)"),
    ("lints", {"discount": 0}, "discount: must be > 0.0 (got 0)"),
    ("lints", {"l2": "1"}, "l2: must be a finite number (got '1')"),
    ("neural_ts", {"hidden": 0}, "hidden: must be >= 1 (got 0)"),
    ("neural_ts", {"device": "tpu"}, "device: must be 'auto', 'cpu' or 'cuda' (got 'tpu')"),
    ("vw:squarecb", {"epsilon": 2.0}, "epsilon: must be <= 1.0 (got 2.0)"),
    ("vw:squarecb", {"extra_args": "--no_such_flag"}, "extra_args: VW rejected"),
    ("uniform", {"seed": -1}, "seed: must be >= 0 (got -1)"),
    ("uniform", {"n_features": 0}, "n_features: must be >= 1 (got 0)"),
])
def test_hyperparameters_are_validated_by_name(name, params, message):
    params = {"n_features": D, **params}
    with pytest.raises(ValueError) as err:
        make(name, **params)
    assert str(err.value).startswith(message)


def test_unknown_names_and_parameters():
    with pytest.raises(ValueError, match="unknown policy 'thompson'; choose from"):
        make("thompson", n_features=D)
    with pytest.raises(ValueError, match="unknown policy 'vw:softmax'"):
        make("vw:softmax", n_features=D)
    with pytest.raises(ValueError, match="alpha: unknown parameter of policy 'lints'"):
        make("lints", n_features=D, alpha=1.0)


def test_state_from_another_class_is_refused():
    sd = train(build("lints")).state_dict()
    with pytest.raises(ValueError, match="state: saved from 'LinTS', not 'SquareCB'"):
        build("squarecb").load_state_dict(sd)
    with pytest.raises(ValueError, match="state: n_features is 4"):
        make("lints", n_features=3).load_state_dict(sd)
