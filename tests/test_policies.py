"""One contract suite over every policy (discovered from the registry), plus known answers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from policies import available, make, sample_slate

D, K = 4, 6
SMALL = {"neural_ts": {"hidden": 8, "train_every": 32, "batch_size": 16, "n_draws": 32}}


def build(name, seed=0):
    return make(name, n_features=D, seed=seed, **SMALL.get(name, {}))


def batch(seed=0, b=3):
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(b, K, D))
    mask = rng.random((b, K)) < 0.7
    mask[:, 0] = True
    return phi, mask


def train(p, n=64, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    return p.update(x, (x[:, 0] > 0).astype(float), np.full(n, 0.5))


ALL = available()


@pytest.mark.parametrize("name", ALL)
def test_probabilities_are_a_distribution_over_unmasked(name):
    p = train(build(name))
    phi, mask = batch()
    probs = p.act(phi, mask)
    assert probs.shape == mask.shape and probs.dtype == np.float64
    assert (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert (probs[~mask] == 0).all()
    # honest: a randomized policy never reports certainty while others remain possible
    assert (probs[mask] < 1).all() or name.startswith("vw:")


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_actions(name):
    phi, mask = batch()
    a, b = train(build(name, seed=3)), train(build(name, seed=3))
    np.testing.assert_array_equal(a.act(phi, mask), b.act(phi, mask))


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip_resumes_exactly(name):
    p = train(build(name, seed=5))
    q = build(name, seed=5).load_state_dict(p.state_dict())
    assert q.version == p.version
    phi, mask = batch(seed=2)
    if "save_load_same_actions" in getattr(p, "opt_out", {}):
        np.testing.assert_allclose(q.act(phi, mask).sum(axis=1), 1.0)
        return
    np.testing.assert_array_equal(p.act(phi, mask), q.act(phi, mask))
    train(p, seed=9), train(q, seed=9)  # and learning continues identically
    np.testing.assert_array_equal(p.act(phi, mask), q.act(phi, mask))


@pytest.mark.parametrize("name", ALL)
def test_pickle_round_trip(name):
    p = train(build(name, seed=7))
    q = pickle.loads(pickle.dumps(p))
    phi, mask = batch(seed=4)
    if "save_load_same_actions" in getattr(p, "opt_out", {}):
        assert q.act(phi, mask).shape == mask.shape
        return
    np.testing.assert_array_equal(p.act(phi, mask), q.act(phi, mask))


@pytest.mark.parametrize("name", ALL)
def test_update_does_not_mutate_inputs(name):
    p = build(name)
    rng = np.random.default_rng(0)
    x, r, prop = rng.normal(size=(40, D)), rng.random(40), np.full(40, 0.25)
    copies = [a.copy() for a in (x, r, prop)]
    p.update(x, r, prop)
    for a, c in zip((x, r, prop), copies, strict=True):
        np.testing.assert_array_equal(a, c)
    phi, mask = batch()
    phi_c = phi.copy()
    p.act(phi, mask)
    np.testing.assert_array_equal(phi, phi_c)


@pytest.mark.parametrize("name", ALL)
def test_wrong_shapes_raise_clear_errors(name):
    p = build(name)
    with pytest.raises(ValueError, match=r"^phi: must have shape \(B, K, 4\)"):
        p.act(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^mask: must have shape \(2, 3\)"):
        p.act(np.zeros((2, 3, D)), np.ones((3, 2), dtype=bool))
    with pytest.raises(ValueError, match="^mask: row 1 has no valid candidate"):
        p.act(np.zeros((2, 3, D)), np.array([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match=r"^rewards: must have shape \(2,\)"):
        p.update(np.zeros((2, D)), np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match=r"^propensities: must lie in \(0, 1\]"):
        p.update(np.zeros((2, D)), np.zeros(2), np.array([0.5, 0.0]))


@pytest.mark.parametrize(("name", "params", "field"), [
    ("lints", {"v": -1.0}, "v"), ("lints", {"n_draws": 0}, "n_draws"),
    ("egreedy", {"epsilon": 1.5}, "epsilon"), ("linucb", {"alpha": float("nan")}, "alpha"),
    ("squarecb", {"gamma_scale": 0}, "gamma_scale"), ("lints", {"discount": 0}, "discount"),
    ("neural_ts", {"hidden": 0}, "hidden"), ("vw:squarecb", {"epsilon": 2.0}, "epsilon"),
])
def test_hyperparameters_are_validated_by_name(name, params, field):
    with pytest.raises(ValueError, match=f"^{field}: must"):
        make(name, n_features=D, **params)


def test_unknown_names_and_parameters():
    with pytest.raises(ValueError, match="unknown policy 'thompson'"):
        make("thompson", n_features=D)
    with pytest.raises(ValueError, match="unknown parameter 'alpha'"):
        make("lints", n_features=D, alpha=1.0)


@pytest.mark.parametrize("name", ["egreedy", "linucb", "lints", "squarecb"])
def test_linear_policies_recover_a_planted_linear_model(name):
    rng = np.random.default_rng(0)
    theta = np.array([0.5, -0.3, 0.2, 0.1])
    p = make(name, n_features=D, seed=0, l2=0.1)
    for _ in range(20):
        x = rng.normal(size=(100, D))
        p.update(x, x @ theta + 0.05 * rng.normal(size=100), np.full(100, 0.5))
    np.testing.assert_allclose(p._theta, theta, atol=0.02)


def test_discounting_tracks_a_changed_model():
    rng = np.random.default_rng(1)
    fresh = make("lints", n_features=2, seed=0, discount=0.99)
    stale = make("lints", n_features=2, seed=0)
    for theta in (np.array([1.0, 0.0]), np.array([0.0, 1.0])):
        for _ in range(1000):
            x = rng.normal(size=(1, 2))
            for p in (fresh, stale):
                p.update(x, x @ theta, np.ones(1))
    assert abs(fresh._theta[1] - 1.0) < 0.05 < abs(stale._theta[1] - 1.0)


def planted_stream(policy, n_rounds=1500, seed=0):
    """A seeded stream with a planted linear reward; returns the mean expected reward."""
    rng = np.random.default_rng(seed)
    theta = np.array([0.3, -0.2, 0.25, 0.0])
    sample_rng = np.random.default_rng(seed + 1)
    total = 0.0
    for _ in range(n_rounds // 10):
        phi = rng.normal(size=(10, K, D))
        mean = 1 / (1 + np.exp(-(phi @ theta) * 3))
        probs = policy.act(phi)
        cum = probs.cumsum(axis=1)
        chosen = (cum < sample_rng.random((10, 1))).sum(axis=1).clip(max=K - 1)
        rows = np.arange(10)
        r = (sample_rng.random(10) < mean[rows, chosen]).astype(float)
        policy.update(phi[rows, chosen], r, probs[rows, chosen])
        total += mean[rows, chosen].sum()
    return total / n_rounds


@pytest.mark.parametrize("name", [n for n in ALL if n != "uniform"])
def test_every_learner_beats_uniform(name):
    base = planted_stream(build("uniform"))
    got = planted_stream(build(name))
    assert got > base + 0.08, (name, got, base)


def test_sample_slate_propensities():
    rng = np.random.default_rng(0)
    probs = np.array([[0.5, 0.3, 0.2, 0.0]] * 20000)
    slots, sp = sample_slate(probs, 2, rng)
    assert (slots[:, 0] != slots[:, 1]).all() and (slots != 3).all()
    first = np.bincount(slots[:, 0], minlength=4) / len(slots)
    np.testing.assert_allclose(first, [0.5, 0.3, 0.2, 0.0], atol=0.01)
    # P(slot 1 = 1 | slot 0 = 0) = 0.3 / 0.5
    sel = slots[:, 0] == 0
    np.testing.assert_allclose(sp[sel & (slots[:, 1] == 1), 1], 0.6)
    with pytest.raises(ValueError, match="slate_size"):
        sample_slate(probs, 4, rng)
