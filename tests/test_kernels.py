"""The numba kernels compute what the numpy paths compute, and consume the same draws."""

import os

import numpy as np
import pytest

from policies import kernels, make

D, K = 12, 6


def test_numba_is_installed_and_used():
    # numba is a dependency: CI must exercise the kernels, not silently the numpy paths
    if os.environ.get("LOOPWISE_NUMBA") == "0":
        pytest.skip("LOOPWISE_NUMBA=0: the numpy paths are the ones under test")
    assert kernels.AVAILABLE
    kernels.warm_up()


def trained(name, seed=0, **params):
    rng = np.random.default_rng(seed)
    p = make(name, n_features=D, seed=seed, **params)
    x = rng.normal(size=(40, D)) * (rng.random((40, D)) < 0.5)  # sparse, like one-hot crosses
    for i in range(40):
        p.update(x[i:i + 1], np.array([float(x[i, 0] > 0)]), np.ones(1) / 2)
    return p


def candidates(seed, dtype=np.float64, duplicate=False):
    rng = np.random.default_rng(100 + seed)
    phi = (rng.normal(size=(1, K, D)) * (rng.random((1, K, D)) < 0.4)).astype(dtype)
    if duplicate:  # identical candidates: a singular covariance, wins split by the jitter
        phi[0, 1] = phi[0, 0]
    return phi


def both_paths(monkeypatch, fn):
    """``fn()`` with the kernels, then without, from the same state: both results."""
    out = fn()
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    try:
        return out, fn()
    finally:
        monkeypatch.setattr(kernels, "AVAILABLE", True)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_draws", [64, 33])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lints_one_decision_matches_numpy(monkeypatch, seed, n_draws, masked, dtype):
    p = trained("lints", seed, n_draws=n_draws)
    phi = candidates(seed, dtype, duplicate=seed == 3)
    mask = np.array([[True, True, False, True, True, False]]) if masked else None
    state = p._rng.bit_generator.state

    def decide():
        p._rng.bit_generator.state = state
        probs = p.act(phi, mask)
        return probs, p._rng.random()  # the next draw: the same normals were consumed

    (fast, after_fast), (slow, after_slow) = both_paths(monkeypatch, decide)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    assert after_fast == after_slow
    assert abs(fast.sum() - 1.0) < 1e-12
    if masked:
        assert (fast[~mask] == 0).all()
    if seed == 3:  # the duplicated pair shares its wins (neither gets only the floor)
        assert fast[0, 0] > 0.05 and fast[0, 1] > 0.05


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_draws", [64, 33])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lints_wide_kernel_with_float32_features_and_rounded_ties_matches_numpy(
        monkeypatch, seed, n_draws, masked, dtype):
    # K = 3 D: weight draws theta +/- root z (kernels.lints_one_wide), not score draws
    p = trained("lints", seed, n_draws=n_draws)
    rng = np.random.default_rng(200 + seed)
    phi = (rng.normal(size=(1, 3 * D, D)) * (rng.random((1, 3 * D, D)) < 0.4)).astype(dtype)
    if seed == 3:
        phi[0, 1] = phi[0, 0]  # identical candidates: exact ties share each draw's win
        phi[0, 5:9] = np.round(phi[0, 5:9])
    mask = (rng.random((1, 3 * D)) < 0.7) if masked else None
    if masked:
        mask[0, :2] = True
    state = p._rng.bit_generator.state

    def decide():
        p._rng.bit_generator.state = state
        p._root = None  # each path factors A^-1 itself
        probs = p.act(phi, mask)
        return probs, p._rng.random()

    (fast, after_fast), (slow, after_slow) = both_paths(monkeypatch, decide)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    assert after_fast == after_slow  # the same normals were consumed
    assert abs(fast.sum() - 1.0) < 1e-12
    if masked:
        assert (fast[~mask] == 0).all()
    if seed == 3:
        assert fast[0, 0] == fast[0, 1] > 0.01 / (3 * D)


def test_lints_normals_are_the_generators_normal_draws():
    p = make("lints", n_features=D, seed=5, v=0.7, n_draws=33)
    want = np.random.default_rng(5).normal(0.0, 0.7, (17, 4))
    assert np.array_equal(p._normals(4), want)


def test_lints_kernel_refuses_a_covariance_it_cannot_factor():
    probs = np.full(K, -1.0)
    x = np.ones((K, D))
    ok = kernels.lints_one(x, np.ones(K, bool), -np.eye(D), np.zeros(D), np.zeros((2, K)), 4,
                           0.1, probs)
    assert not ok and (probs == -1.0).all()


@pytest.mark.parametrize("seed", range(3))
def test_linucb_one_decision_matches_numpy(monkeypatch, seed):
    p = trained("linucb", seed, alpha=2.0)
    phi = candidates(seed)
    phi[0, 2] = 0.0  # a zero row: no bound term, the mean alone
    fast, slow = both_paths(monkeypatch, lambda: p.act(phi))
    np.testing.assert_array_equal(fast, slow)
    bound = np.empty(K)
    kernels.linucb_one(phi[0], p._a_inv, p._b, 2.0, bound)
    x = phi[0]
    exact = x @ p.theta + 2.0 * np.sqrt(np.einsum("ij,jk,ik->i", x, p._a_inv, x))
    np.testing.assert_allclose(bound, exact, rtol=1e-10)


NO_ROOT = np.empty((0, 0))


def step(a_inv, b, x, r, lam=1.0, refresh=0.0, j=0, lower=NO_ROOT):
    return kernels.ridge_step(a_inv, b, x, r, lam, refresh, j, lower)


@pytest.mark.parametrize("lam, refresh", [(1.0, 0.0), (0.97, 0.03 * 0.5 * D)])
def test_ridge_step_is_sherman_morrison_with_forgetting(lam, refresh):
    # A <- lam A + x x^T + refresh e_j e_j^T, b <- lam b + r x: the inverse and b the exact
    # algebra gives; the prediction and leverage returned are the model's before the record
    rng = np.random.default_rng(0)
    a = np.eye(D) * 0.5
    a_inv, b, b_ref = np.linalg.inv(a), np.zeros(D), np.zeros(D)
    for t in range(200):
        x = rng.normal(size=D) * (rng.random(D) < 0.5)
        r = float(rng.normal())
        pred, quad, ok = step(a_inv, b, x, r, lam, refresh, t % D)  # in place
        assert not ok  # no factor given
        np.testing.assert_allclose([pred, quad], [x @ np.linalg.solve(a, b_ref),
                                                  x @ np.linalg.solve(a, x)], rtol=1e-9)
        a = lam * a + np.outer(x, x)
        a[t % D, t % D] += refresh
        b_ref = lam * b_ref + r * x
    np.testing.assert_allclose(a_inv, np.linalg.inv(a), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b, b_ref, rtol=1e-12, atol=1e-14)


def test_ridge_step_without_forgetting_is_the_plain_sherman_morrison_bit_for_bit():
    rng = np.random.default_rng(5)
    a_inv, b = np.eye(D) * 2.0, np.zeros(D)
    ref, b_ref = a_inv.copy(), b.copy()
    for _ in range(50):
        x = rng.normal(size=D)
        step(a_inv, b, x, 1.0)
        ax = ref @ x  # the operations the kernel does, in its order
        ref += np.multiply.outer(-1.0 / (1.0 + x @ ax) * ax, ax)
        b_ref += 1.0 * x
    np.testing.assert_allclose(a_inv, ref, rtol=1e-12)
    np.testing.assert_array_equal(b, b_ref)


@pytest.mark.parametrize("lam, refresh, scale", [
    (1.0, 0.0, 1.0), (1.0, 0.0, 1e3), (1.0, 0.0, 1e6), (0.98, 0.02 * D, 1.0),
    (0.98, 0.02 * D, 1e3)])  # (at 1e6 with forgetting, 300 records without the policy's
# periodic resync leave A^-1 itself not numerically positive definite: no exact factor)
def test_ridge_step_downdates_the_cholesky_factor_of_the_new_inverse(scale, lam, refresh):
    rng = np.random.default_rng(3)
    a = np.eye(D) * 0.5
    a_inv, b = np.linalg.inv(a), np.zeros(D)
    a_inv2, b2 = a_inv.copy(), b.copy()
    lower = np.linalg.cholesky(a_inv)
    refused = 0
    for t in range(300):
        x = rng.normal(size=D) * (rng.random(D) < 0.5) * scale
        r = float(rng.normal())
        if not step(a_inv, b, x, r, lam, refresh, t % D, lower)[2]:
            refused += 1  # a record that takes most of a pivot: factored anew, as LinTS does
            lower = np.linalg.cholesky(a_inv)
        step(a_inv2, b2, x, r, lam, refresh, t % D)
        a = lam * a + np.outer(x, x)
        a[t % D, t % D] += refresh
        # the model is the one without a factor, bit for bit; the factor is as close to the
        # exact new inverse's as A^-1 itself is (features of large scale included)
        assert (a_inv == a_inv2).all() and (b == b2).all()
        exact = np.linalg.inv(a)
        own_error = np.abs(a_inv - exact).max()
        assert not np.triu(lower, 1).any() and (np.diag(lower) > 0).all()
        assert np.abs(lower @ lower.T - exact).max() <= 10 * own_error + 1e-9 * np.abs(exact).max()
    assert refused < 30  # the first records in each direction; later ones are downdates


def test_ridge_step_reports_a_factor_it_cannot_downdate():
    # a factor of a matrix smaller than the true inverse: taking v v^T off leaves a negative
    # pivot, which is reported (the model itself is still updated)
    a_inv, b = np.eye(D), np.zeros(D)
    x = np.zeros(D)
    x[0] = 1.0
    assert not step(a_inv, b, x, 1.0, lower=np.eye(D) * 0.1)[2]
    assert a_inv[0, 0] == 0.5 and b[0] == 1.0
    upper = np.triu(np.ones((D, D)))  # not lower triangular: refused, model updated
    assert not step(a_inv, b, x, 1.0, lower=upper)[2]
    assert a_inv[0, 0] == pytest.approx(1 / 3) and b[0] == 2.0


def test_lints_keeps_its_factor_up_to_date_and_decides_as_with_a_fresh_one(monkeypatch):
    import policies.lints as lints_module

    if not kernels.AVAILABLE:
        pytest.skip("LOOPWISE_NUMBA=0: the numpy path factors A^-1 for every decision")

    p = make("lints", n_features=D, seed=4)
    fresh = make("lints", n_features=D, seed=4)
    factored = []
    real = lints_module._psd_root
    monkeypatch.setattr(lints_module, "_psd_root",
                        lambda c: factored.append(c is p._a_inv) or real(c))
    rng = np.random.default_rng(4)
    for t in range(300):
        phi = rng.normal(size=(1, D + 4, D)) * (rng.random((1, D + 4, D)) < 0.5)
        if p._root is None or not np.triu(p._root, 1).any():  # (after a refit both use
            # the square root it gave, upper triangular)
            fresh._root = None  # factored afresh for this decision
        np.testing.assert_array_equal(p.act(phi), fresh.act(phi))
        x, r = phi[0, t % (D + 4)], float(rng.random() < 0.3)
        p.learn_one(x, r, 0.5)
        fresh.learn_one(x, r, 0.5)
    # one factorization, then one after each refit of A (every RESYNC records); the rest
    # are downdates, which match a fresh factor to rounding
    assert sum(factored) == 1 + 300 // (p.RESYNC + 1)
    assert len(factored) - sum(factored) > 250
    assert not np.triu(p._root, 1).any()
    np.testing.assert_allclose(p._root, real(p._a_inv), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("discount", [1.0, 0.9])
def test_policies_learn_the_same_with_and_without_kernels(monkeypatch, discount):
    rng = np.random.default_rng(2)
    x, r = rng.normal(size=(300, D)), rng.normal(size=300)

    def learn():
        p = make("lints", n_features=D, discount=discount, l2=0.5)
        for i in range(300):  # crosses a resync without discounting
            p.update(x[i:i + 1], r[i:i + 1], np.ones(1))
        return p

    fast, slow = both_paths(monkeypatch, learn)
    np.testing.assert_allclose(fast._a_inv, slow._a_inv, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.theta, slow.theta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.precision(), slow.precision(), rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_draws", [64, 33])
@pytest.mark.parametrize("masked", [False, True])
def test_lints_one_decision_with_more_candidates_than_features_matches_numpy(
        monkeypatch, seed, n_draws, masked):
    p = trained("lints", seed, n_draws=n_draws)
    if seed == 2:
        p.update(np.ones((5, D)), np.ones(5), np.ones(5))  # a refit: its own square root
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(1, D + 4, D)) * (rng.random((1, D + 4, D)) < 0.5)
    phi[0, 1] = phi[0, 0]  # identical candidates tie exactly in every draw: they share it
    mask = (np.arange(D + 4) % 3 != 2)[None] if masked else None
    state = p._rng.bit_generator.state

    def decide():
        p._rng.bit_generator.state = state
        return p.act(phi, mask), p._rng.random()

    (fast, after_fast), (slow, after_slow) = both_paths(monkeypatch, decide)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    assert after_fast == after_slow
    assert fast[0, 0] == fast[0, 1] and abs(fast.sum() - 1.0) < 1e-12


def psd_cases():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, D))
    well = np.linalg.inv(x.T @ x + np.eye(D))  # a posterior covariance after 60 records
    low_rank = x[:3].T @ x[:3]  # rank 3: factors only with the jitter
    tiny = np.diag(np.r_[np.ones(D - 1), -1e-15])  # a rounding-error negative eigenvalue
    indefinite = np.diag(np.r_[np.ones(D - 1), -1.0])  # no jitter helps: eigen fallback
    return {"well": well, "low_rank": low_rank, "tiny": tiny, "indefinite": indefinite}


@pytest.mark.parametrize("case", ["well", "low_rank", "tiny", "indefinite"])
def test_lints_root_kernel_is_cholesky_psd(case):
    from policies.lints import _psd_root
    from policies.thompson import cholesky_psd

    cov = psd_cases()[case]
    lower = np.empty_like(cov)
    factored = kernels.cholesky_jittered(cov, lower)
    assert factored == (case != "indefinite")
    ref = cholesky_psd(cov)
    got = _psd_root(cov)
    # the same factor up to rounding; a rank-deficient matrix's factor is ill-conditioned in
    # its null space (entries of sqrt(jitter) size), where rounding moves it by ~1e-10
    np.testing.assert_allclose(got, ref, rtol=1e-9,
                               atol=1e-12 if case != "low_rank" else 1e-9)
    if factored:  # lower triangular, and a square root of the (jittered) matrix
        assert not np.triu(got, 1).any()
        np.testing.assert_allclose(got @ got.T, cov, atol=1e-5 * np.abs(cov).max())


def test_lints_decisions_match_numpy_when_each_path_factors_its_own_root(monkeypatch):
    p = trained("lints", 1)
    rng = np.random.default_rng(1)
    phi = rng.normal(size=(1, D + 4, D)) * (rng.random((1, D + 4, D)) < 0.5)
    state = p._rng.bit_generator.state

    def decide():
        p._rng.bit_generator.state = state
        p._root = None  # as after an update: each path computes the square root itself
        return p.act(phi), p._rng.random()

    (fast, after_fast), (slow, after_slow) = both_paths(monkeypatch, decide)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    assert after_fast == after_slow
