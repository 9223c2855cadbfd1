"""The policies' numba kernels compute what their numpy statements (tests/oracles_policies.py)
compute, and the policies draw what the kernels expect."""

import numpy as np
import oracles_policies as oracles
import pytest

from policies import kernels, make
from policies.thompson import inverse_and_root, normals, psd_root

D, K = 12, 6


def test_warm_up_compiles_every_kernel_once():
    kernels.warm_up()
    kernels.warm_up()  # (a no-op the second time)


def trained(name, seed=0, **params):
    rng = np.random.default_rng(seed)
    p = make(name, n_features=D, seed=seed, **params)
    x = rng.normal(size=(40, D)) * (rng.random((40, D)) < 0.5)  # sparse, like one-hot crosses
    for i in range(40):
        p.update(x[i:i + 1], np.array([float(x[i, 0] > 0)]), np.ones(1) / 2)
    return p


def candidates(seed, k=K, dtype=np.float64, duplicate=False):
    rng = np.random.default_rng(100 + seed)
    phi = (rng.normal(size=(1, k, D)) * (rng.random((1, k, D)) < 0.4)).astype(dtype)
    if duplicate:  # identical candidates: a singular covariance, wins split by the jitter
        phi[0, 1] = phi[0, 0]
    return phi


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_draws", [64, 33])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [K, 3 * D])  # K <= D, and more candidates than features
def test_lints_one_decision_is_the_oracles(seed, n_draws, masked, dtype, k):
    p = trained("lints", seed, n_draws=n_draws)
    phi = candidates(seed, k, dtype, duplicate=seed == 3)
    mask = (np.arange(k) % 3 != 2) if masked else np.ones(k, bool)
    state = p._rng.bit_generator.state
    probs = p.act(phi, mask[None] if masked else None)
    after = p._rng.random()
    p._rng.bit_generator.state = state  # the same normals, drawn as the policy draws them
    z = normals(p._rng, p.v, n_draws, k)
    want = oracles.win_one(phi[0], mask, p._a_inv, p._b, z, n_draws, p.epsilon)
    np.testing.assert_allclose(probs[0], want, rtol=0, atol=1e-12)
    assert p._rng.random() == after  # and no other draw
    assert abs(probs.sum() - 1.0) < 1e-12 and (probs[0, ~mask] == 0).all()
    if seed == 3 and k == K:  # the duplicated pair shares its wins (not only the floor)
        assert probs[0, 0] > 0.05 and probs[0, 1] > 0.05


def test_policy_normals_are_the_generators_normal_draws():
    want = np.random.default_rng(5).normal(0.0, 0.7, (17, 4))
    assert np.array_equal(normals(np.random.default_rng(5), 0.7, 33, 4), want)


def test_win_one_gives_uniform_where_the_covariance_cannot_be_factored():
    probs = np.full(K, -1.0)
    mask = np.arange(K) != 2
    kernels.win_one(np.ones((K, D)), mask, -np.eye(D), np.zeros(D), np.zeros((2, K)), 1.0,
                    4, 0.1, probs)
    np.testing.assert_array_equal(probs, np.where(mask, 1 / (K - 1), 0.0))


@pytest.mark.parametrize("seed", range(3))
def test_linucb_one_decision_is_the_oracles(seed):
    p = trained("linucb", seed, alpha=2.0)
    phi = candidates(seed)
    phi[0, 2] = 0.0  # a zero row: no bound term, the mean alone
    bound = np.empty(K)
    kernels.linucb_one(phi[0], p._a_inv, p._b, 2.0, bound)
    np.testing.assert_allclose(bound, oracles.linucb_one(phi[0], p._a_inv, p._b, 2.0),
                               rtol=1e-10, atol=1e-14)
    best = bound == bound.max()
    np.testing.assert_allclose(p.act(phi)[0], np.where(best, 0.98 / best.sum(), 0) + 0.02 / K)


@pytest.mark.parametrize("lam, refresh", [(1.0, 0.0), (0.97, 0.03 * 0.5 * D)])
def test_ridge_step_is_the_oracles_and_the_exact_algebra(lam, refresh):
    # A <- lam A + x x^T + refresh e_j e_j^T, b <- lam b + r x: the inverse and b the exact
    # algebra gives; the prediction and leverage returned are the model's before the record
    rng = np.random.default_rng(0)
    a = np.eye(D) * 0.5
    a_kept = a.copy()  # the kernel's A, updated in place
    a_inv, b, b_ref = np.linalg.inv(a), np.zeros(D), np.zeros(D)
    for t in range(200):
        x = rng.normal(size=D) * (rng.random(D) < 0.5)
        r = float(rng.normal())
        want = oracles.ridge_step(a_inv, b, x, r, lam, refresh, t % D)
        pred, quad = kernels.ridge_step(a_kept, a_inv, b, x, r, lam, refresh, t % D)
        np.testing.assert_allclose([pred, quad], want[2:], rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(a_inv, want[0], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(b, want[1], rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose([pred, quad], [x @ np.linalg.solve(a, b_ref),
                                                  x @ np.linalg.solve(a, x)], rtol=1e-9)
        a = lam * a + np.outer(x, x)
        a[t % D, t % D] += refresh
        b_ref = lam * b_ref + r * x
        np.testing.assert_allclose(a_kept, a, rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(a_kept, a_kept.T)  # exactly symmetric
    np.testing.assert_allclose(a_inv, np.linalg.inv(a), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b, b_ref, rtol=1e-12, atol=1e-14)


def psd_cases():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, D))
    well = np.linalg.inv(x.T @ x + np.eye(D))  # a posterior covariance after 60 records
    low_rank = x[:3].T @ x[:3]  # rank 3: factors only with the jitter
    tiny = np.diag(np.r_[np.ones(D - 1), -1e-15])  # a rounding-error negative eigenvalue
    indefinite = np.diag(np.r_[np.ones(D - 1), -1.0])  # no jitter helps: eigen fallback
    return {"well": well, "low_rank": low_rank, "tiny": tiny, "indefinite": indefinite}


@pytest.mark.parametrize("case", ["well", "low_rank", "tiny", "indefinite"])
def test_psd_root_is_the_cholesky_factor_or_the_clipped_eigen_root(case):
    cov = psd_cases()[case]
    root = psd_root(cov)
    if case == "well":  # LAPACK's lower factor
        np.testing.assert_array_equal(root, np.linalg.cholesky(cov))
    else:  # the eigendecomposition's root of the matrix with its negative part clipped
        vals, vecs = np.linalg.eigh(cov)
        clipped = (vecs * np.clip(vals, 0.0, None)) @ vecs.T
        np.testing.assert_allclose(root @ root.T, clipped, atol=1e-12)


@pytest.mark.parametrize("case", ["well", "indefinite"])
def test_inverse_and_root_of_a_precision(case):
    a = np.linalg.inv(psd_cases()["well"]) if case == "well" else psd_cases()[case]
    a_inv, root = inverse_and_root(a)
    np.testing.assert_array_equal(a_inv, a_inv.T)  # exactly symmetric
    if case == "well":
        np.testing.assert_allclose(a_inv, np.linalg.inv(a), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(root, np.linalg.cholesky(a_inv), rtol=1e-9, atol=1e-12)
        assert not np.triu(root, 1).any()
    else:  # not positive definite: no factor, the symmetrized inverse
        assert root is None
        want = np.linalg.inv(a)
        np.testing.assert_array_equal(a_inv, (want + want.T) * 0.5)


def test_lints_batch_draws_use_the_cholesky_factor_of_the_current_inverse():
    p = trained("lints", 1, half_life=50)
    phi = np.random.default_rng(1).normal(size=(3, D + 4, D))
    p.act(phi)
    np.testing.assert_array_equal(p._root, psd_root(p._a_inv))
    p.learn_one(phi[0, 0], 1.0, 0.5)
    assert p._root is None  # the model changed: factored anew when a batch needs it
    p.act(phi)
    np.testing.assert_array_equal(p._root, psd_root(p._a_inv))


def score_cases(seed):
    """Scores (B, K) with exact ties (rounded) and a mask leaving every row a candidate."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(50, K)).round(1)
    scores[3] = 0.0  # every candidate tied (an untrained model)
    mask = rng.random((50, K)) < 0.6
    mask[np.arange(50), rng.integers(K, size=50)] = True
    return scores, mask


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("masked", [False, True])
def test_greedy_mix_and_inverse_gap_are_the_oracles(seed, masked):
    scores, mask = score_cases(seed)
    mask = mask if masked else None
    probs = np.empty(scores.shape)
    kernels.greedy_mix(scores, mask, 0.1, probs)
    np.testing.assert_allclose(probs, oracles.greedy_mix(scores, mask, 0.1), rtol=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    kernels.inverse_gap(scores, mask, 7.0, probs)
    np.testing.assert_allclose(probs, oracles.inverse_gap(scores, mask, 7.0), rtol=1e-12,
                               atol=1e-15)
    if masked:
        assert (probs[~mask] == 0.0).all()


def test_greedy_mix_gives_uniform_over_the_valid_where_no_score_compares():
    scores = np.array([[np.nan, np.nan, np.nan], [np.nan, 2.0, 1.0]])
    probs = np.empty(scores.shape)
    kernels.greedy_mix(scores, np.array([[True, False, True], [True, True, True]]), 0.1, probs)
    np.testing.assert_allclose(probs, [[0.5, 0.0, 0.5], [0.1 / 3, 0.9 + 0.1 / 3, 0.1 / 3]])
