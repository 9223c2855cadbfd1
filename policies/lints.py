"""Linear Thompson sampling that reports each candidate's probability of winning."""

from __future__ import annotations

import numpy as np

from policies import kernels
from policies.base import check_param, mix_uniform
from policies.forgetting import DRIFT_FACTOR, HALF_LIFE
from policies.linear import LinearPolicy
from policies.thompson import cholesky_psd, cholesky_small, win_probabilities_root


class LinTS(LinearPolicy):
    """Linear Thompson sampling with honest propensities.

    The posterior of the ridge model is ``N(theta, v^2 A^-1)``. Plain Thompson sampling shows
    the winner of one posterior draw, whose probability is unknown; here ``n_draws`` draws
    estimate each candidate's probability of winning (see
    :func:`policies.thompson.win_probabilities_root`), a floor ``epsilon`` mixes in uniform so
    no candidate that could win gets 0, and the caller samples from exactly those
    probabilities. That is still Thompson sampling (sampling by probability of being best),
    with a logged propensity that is the true one.

    One decision at a time (B = 1, K <= D), the K scores are drawn jointly from ``N(phi
    theta, v^2 phi A^-1 phi^T)`` through the Cholesky factor of that K x K covariance (K
    normals per draw, and ``phi theta = (phi A^-1) b`` reuses the product; see
    :func:`policies.thompson.cholesky_small` for the jitter it adds), in one compiled call
    (:func:`policies.kernels.lints_one`) where numba is available. A batch shares
    ``n_draws`` weight vectors ``theta + v R z`` across its rows, with ``R`` a square root of
    ``A^-1``: the inverse of the Cholesky factor of ``A`` that a refit computes anyway, or
    the Cholesky factor of ``A^-1`` after single records (once per model version, when a
    batch needs it).

    Parameters
    ----------
    l2, half_life, discount, drift_factor, drift_period
        Of the ridge model and its forgetting (see :class:`~policies.linear.LinearPolicy`).
    v
        Posterior scale (exploration strength).
    n_draws
        Posterior draws per decision used to estimate win probabilities (in antithetic
        pairs). 64 keeps one decision at tens of microseconds and a batch of 256 decisions
        near a millisecond; the estimate only needs to be good enough to explore well,
        since the caller samples from exactly the reported numbers.
    epsilon
        Uniform floor: every valid candidate gets at least ``epsilon / K``.

    Examples
    --------
    >>> import numpy as np
    >>> p = LinTS(n_features=2, seed=0)
    >>> x = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> for _ in range(50):
    ...     _ = p.update(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 0.0]), np.ones(2) / 2)
    >>> probs = p.act(x)
    >>> bool(probs[0, 0] > 0.9), bool(probs[0, 1] >= 0.01 / 2)
    (True, True)
    """

    _act_normalized = True
    _params = (*LinearPolicy._params, "v", "n_draws", "epsilon")
    _state = (*LinearPolicy._state, "_root")  # None until a decision or a refit needs it

    def __init__(self, n_features: int, seed: int | None = 0, l2: float = 1.0,
                 discount: float | None = None, half_life: float | None = HALF_LIFE,
                 drift_factor: float = DRIFT_FACTOR, drift_period: int | None = None, v: float = 0.3,
                 n_draws: int = 64, epsilon: float = 0.01):
        super().__init__(n_features, seed, l2, discount, half_life, drift_factor, drift_period)
        check_param("v", v, low=0.0, low_open=True)
        check_param("n_draws", n_draws, low=1, integer=True)
        check_param("epsilon", epsilon, low=0.0, high=1.0, low_open=True)
        self.v = v
        self.n_draws = n_draws
        self.epsilon = epsilon
        self._root: np.ndarray | None = None  # a square root of A^-1, once needed

    def _after_update(self) -> None:
        super()._after_update()
        self._root = None

    def _after_refit(self, root: np.ndarray | None) -> None:
        self._root = root  # (upper triangular: replaced by a lower factor when next stale)

    def _ridge_step(self, x: np.ndarray, r: float, lam: float, refresh: float, j: int
                    ) -> tuple[float, float]:
        """One record, as :class:`~policies.linear.LinearPolicy` learns it; the lower
        Cholesky factor of ``A^-1`` a decision factored is downdated (and, with forgetting,
        scaled) along with it (:func:`policies.kernels.ridge_step`, O(D^2)), so the next
        decision needs no new factorization (O(D^3)) and samples the posterior the model
        now has; it is the factor a new factorization would give, up to rounding. Any other
        square root (a refit's, or an eigendecomposition's) is dropped, as before."""
        root = self._root
        if root is None or not root.flags.c_contiguous or not kernels.AVAILABLE:
            self._root = None  # (the kernel takes C-contiguous arrays, as factored)
            return super()._ridge_step(x, r, lam, refresh, j)
        pred, quad, ok = kernels.ridge_step(self._a_inv, self._b, x, r, lam, refresh, j, root)
        if not ok:
            self._root = None  # not lower triangular, or lost to rounding: factored anew
        return pred, quad

    def _after_update_one(self) -> None:
        LinearPolicy._after_update(self)  # _ridge_step kept the root up to date

    def _act(self, phi: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        b, k, d = phi.shape
        if b == 1 and k <= d:  # one decision: K normals per draw rather than D
            probs = self._act_one(phi[0], None if mask is None else mask[0])
            if probs is not None:
                return probs
        if self._root is None:
            self._root = _psd_root(self._a_inv)
        if b == 1 and kernels.AVAILABLE:  # one decision, K > D: the same in one call
            z = self._normals(d)
            probs = np.empty((1, k))
            if kernels.lints_one_wide(phi[0], _all_valid(k) if mask is None else mask[0],
                                      self._model_theta(), self._root, z, self.n_draws,
                                      self.epsilon, probs[0]):
                return probs  # else NaN scores: the numpy path says what they give
        wins = win_probabilities_root(phi, mask, self._model_theta(), self._root, self.v,
                                      self.n_draws, self._rng)
        return mix_uniform(wins, mask, self.epsilon)

    def _act_one(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """Probabilities (1, K) for one decision's candidates ``x`` (K, D), from ``n_draws``
        joint draws of their scores (antithetic pairs, each exactly distributed up to the
        jitter, which also splits the wins of identical candidates); ``None`` (no draw made)
        if their covariance cannot be factored even so."""
        if kernels.AVAILABLE:
            return self._act_one_compiled(x, mask)
        x = x.astype(np.float64, copy=False)
        k = len(x)
        xa = np.dot(x, self._a_inv)
        lower = cholesky_small(np.dot(xa, x.T))
        if lower is None:
            return None
        n = self.n_draws
        half = (n + 1) // 2
        spread = np.dot(self._normals(k), lower.T)
        scores = np.concatenate((spread, -spread))
        scores += np.dot(xa, self._b)  # phi theta
        if 2 * half != n:
            scores = scores[:n]
        if mask is not None:
            scores[:, ~mask] = -np.inf
        wins = np.bincount(scores.argmax(axis=1), minlength=k) / n
        return mix_uniform(wins.reshape(1, k), None if mask is None else mask[None],
                           self.epsilon)

    def _act_one_compiled(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """:meth:`_act_one` in one compiled call (:func:`policies.kernels.lints_one`): the same
        normals, the same probabilities up to rounding. The normals are drawn first, so a
        covariance that cannot be factored (then ``None``) has consumed them."""
        k = len(x)
        z = self._normals(k)
        if mask is None:
            mask = _all_valid(k)
        probs = np.empty((1, k))
        if kernels.lints_one(x, mask, self._a_inv, self._b, z, self.n_draws, self.epsilon,
                             probs[0]):
            return probs
        return None

    def _normals(self, width: int) -> np.ndarray:
        """The ``N(0, v^2)`` normals of one decision's antithetic draws, ((n_draws + 1) // 2,
        ``width``): the generator's ``normal(0, v, ...)`` values, drawn as standard normals
        and scaled in place (a fifth faster than ``normal`` with its broadcasting)."""
        z = self._rng.standard_normal(((self.n_draws + 1) // 2, width))
        z *= self.v
        return z


_ALL_VALID: dict[int, np.ndarray] = {}


def _all_valid(k: int) -> np.ndarray:
    """A mask of ``k`` valid candidates (cached per K; never written)."""
    mask = _ALL_VALID.get(k)
    if mask is None:
        mask = _ALL_VALID[k] = np.ones(k, dtype=bool)
    return mask


def _psd_root(cov: np.ndarray) -> np.ndarray:
    """:func:`policies.thompson.cholesky_psd` of ``A^-1``, in one compiled call when it can
    (the factor LAPACK gives up to rounding)."""
    if kernels.AVAILABLE:
        lower = np.empty_like(cov)
        if kernels.cholesky_jittered(cov, lower):
            return lower
    return cholesky_psd(cov)
