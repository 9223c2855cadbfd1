"""Fast paths of the linear policies agree with their general paths.

One decision (B = 1) and one record (N = 1, one-row arrays) take shorter code paths; here
they are checked against the batch and mini-batch paths, and LinTS's one-decision draws
against the exact answer and against its batch draws.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from policies import make
from policies.thompson import win_probabilities

LINEAR = ["egreedy", "linucb", "lints", "squarecb"]
D, K = 8, 5  # K <= D: LinTS draws one decision's scores jointly


def trained(name, seed=0, n=40, **params):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, D))
    p = make(name, n_features=D, seed=seed, **params)
    return p.update(x, (x[:, 0] > 0).astype(float), np.full(n, 0.5))


def candidates(b, seed=2):
    return np.random.default_rng(seed).normal(size=(b, K, D))


@pytest.mark.parametrize("name", [*LINEAR, "uniform"])
def test_one_record_fast_path_learns_what_the_general_path_learns(name):
    fast, general = trained(name), trained(name)
    rng = np.random.default_rng(3)
    for _ in range(300):  # crosses a resync of the single-record updates
        x, r = rng.normal(size=(1, D)), float(rng.random())
        fast.update(x, np.array([r]), np.array([0.5]))
        general.update(x.tolist(), [r], [0.5])  # lists take the general path
    assert fast.version == general.version == 301
    phi = candidates(2)
    np.testing.assert_array_equal(fast.act(phi), general.act(phi))
    if name != "uniform":
        np.testing.assert_allclose(fast._a_inv, general._a_inv, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(fast.theta, general.theta, rtol=1e-12, atol=1e-15)


def test_one_record_fast_path_keeps_every_check():
    p = make("egreedy", n_features=2, half_life=None)  # (pending rows kept as they came)
    bad = [((np.full((1, 2), np.nan), np.zeros(1), np.ones(1)), "^phi: must be finite"),
           ((np.zeros((1, 2)), np.array([np.inf]), np.ones(1)), "^rewards: must be finite"),
           ((np.zeros((1, 2)), np.zeros(1), np.zeros(1)),
            r"^propensities: must lie in \(0, 1\] \(got min 0.0, max 0.0\)"),
           ((np.zeros((1, 2)), np.zeros(1), np.array([np.nan])), "^propensities: must lie")]
    for args, message in bad:
        with pytest.raises(ValueError, match=message):
            p.update(*args)
    with pytest.raises(TypeError, match="^rewards: must be a numeric array"):
        p.update(np.zeros((1, 2)), np.array(["x"]), np.ones(1))
    assert p.version == 0
    x = np.ones((1, 2), dtype=np.float32)
    p.update(x, np.array([True]), np.array([1]))  # bool and int arrays are numbers
    assert p.version == 1 and p.theta[0] > 0  # learned: a reward of 1 on both features
    np.testing.assert_array_equal(x, [[1.0, 1.0]])  # the caller's row untouched


@pytest.mark.filterwarnings("ignore:overflow encountered")  # numpy's, from the quick sum
def test_quick_finiteness_checks_catch_one_bad_value_and_pass_huge_finite_ones():
    # act and learn_one first test one sum of the features: one NaN or infinity anywhere
    # makes it non-finite; finite values whose sum overflows are settled by the exact
    # check, which accepts them
    p = make("lints", n_features=3, seed=0)
    for bad in (np.nan, np.inf, -np.inf):
        phi = np.ones((1, 4, 3))
        phi[0, 2, 1] = bad
        with pytest.raises(ValueError, match="^phi: must be finite"):
            p.act(phi)
        with pytest.raises(ValueError, match="^phi: must be finite"):
            p.learn_one(phi[0, 2], 1.0, 0.5)
    huge = np.full((1, 4, 3), 1.5e308)  # sums to infinity
    assert np.isfinite(p.act(huge)).all()
    p.learn_one(np.array([1.5e308, 1.5e308, 0.0]), 0.0, 0.5)
    assert p.version == 1


@pytest.mark.parametrize("name", ["egreedy", "linucb", "squarecb"])
def test_one_decision_equals_the_same_row_of_a_batch(name):
    p = trained(name)
    phi = candidates(3)
    batch = p.act(phi)
    for b in range(3):
        np.testing.assert_allclose(p.act(phi[b:b + 1]), batch[b:b + 1], rtol=1e-12, atol=1e-15)


def test_lints_one_decision_matches_the_exact_win_probability():
    # one record x = e0, r = 1, l2 = 1: theta = (0.5, 0, ...), A^-1 = diag(0.5, 1, ...)
    p = make("lints", n_features=D, seed=0, v=1.0, n_draws=40_000, epsilon=0.1)
    p.update(np.eye(D)[:1], np.ones(1), np.full(1, 0.5))
    phi = np.zeros((1, 3, D))
    phi[0, 0, 0] = 1.0  # N(0.5, 0.5)
    phi[0, 1, 1] = 1.0  # N(0, 1)
    phi[0, 2, 1] = 1.0  # the same candidate again: always tied with candidate 1
    probs = p.act(phi)
    # candidate 0 beats the pair with P(N(0.5, 1.5) > 0); the pair shares the rest
    exact = 0.5 * (1 + math.erf(0.5 / math.sqrt(1.5) / math.sqrt(2)))
    np.testing.assert_allclose(probs[0, 0], 0.9 * exact + 0.1 / 3, atol=0.01)
    np.testing.assert_allclose(probs[0, 1] + probs[0, 2], 0.9 * (1 - exact) + 0.2 / 3, atol=0.01)


def test_lints_one_decision_and_batch_draws_agree_in_law():
    p = trained("lints", v=1.0, n_draws=40_000)
    phi = candidates(1)
    one = p.act(phi)  # joint draws of the K scores
    batch = p.act(np.repeat(phi, 2, axis=0))  # shared weight draws
    np.testing.assert_allclose(one[0], batch[0], atol=0.01)
    np.testing.assert_allclose(batch[0], batch[1], atol=0.01)


def test_lints_one_decision_with_a_mask():
    p = trained("lints")
    phi = candidates(1)
    mask = np.array([[True, False, True, False, True]])
    probs = p.act(phi, mask)
    assert (probs[~mask] == 0).all() and (probs[mask] > 0).all()
    np.testing.assert_allclose(probs.sum(), 1.0)


def test_lints_one_decision_resumes_exactly_after_save_load_and_pickle():
    p = trained("lints", seed=5)
    q = make("lints", n_features=D, seed=5).load_state_dict(p.state_dict())
    r = pickle.loads(pickle.dumps(p))
    phi = candidates(1)
    for _ in range(3):
        expected = p.act(phi)
        np.testing.assert_array_equal(q.act(phi), expected)
        np.testing.assert_array_equal(r.act(phi), expected)
        for s in (p, q, r):
            s.update(phi[0, :1], np.ones(1), np.full(1, 0.5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_draws_match_the_exact_answer_with_a_mask(dtype):
    rng = np.random.default_rng(0)
    b, d = 300, 3  # more decisions than one chunk
    phi = np.zeros((b, 3, d), dtype)
    phi[:, 0, 0], phi[:, 1, 1], phi[:, 2, 2] = 1.0, 2.0, 9.0
    mask = np.ones((b, 3), bool)
    mask[:, 2] = False  # the best candidate is masked away
    theta, root = np.array([1.0, 0.0, 1.0]), np.diag(np.sqrt([0.5, 0.6, 1.0]))
    got = win_probabilities(phi, mask, None, None, theta, lambda: root, 1.0, 40_000, 0.0, rng)
    # s0 ~ N(1, 0.5), s1 ~ N(0, 4 * 0.6); the same draws for every row
    exact = 0.5 * (1 + math.erf(1.0 / math.sqrt(0.5 + 4 * 0.6) / math.sqrt(2)))
    np.testing.assert_allclose(got[:, 0], exact, atol=0.01)
    assert (got[:, 2] == 0).all()
    np.testing.assert_allclose(got.sum(axis=1), 1.0)


@pytest.mark.parametrize("name", ["egreedy", "linucb", "squarecb"])
def test_large_float32_batches_score_in_float32_with_the_same_result(name):
    p = trained(name)
    phi = np.random.default_rng(5).normal(size=(120, K, D)).astype(np.float32)
    assert phi.shape[0] * K >= p.FLOAT32_ROWS
    probs = p.act(phi)
    assert probs.dtype == np.float64
    np.testing.assert_allclose(probs, p.act(phi.astype(np.float64)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
