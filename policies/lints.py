"""Linear Thompson sampling that reports each candidate's probability of winning."""

from __future__ import annotations

import numpy as np

from policies.base import check_param, mix_uniform
from policies.linear import LinearPolicy
from policies.thompson import cholesky_psd, win_probabilities


class LinTS(LinearPolicy):
    """Linear Thompson sampling with honest propensities.

    The posterior of the ridge model is ``N(theta, v^2 A^-1)``. Plain Thompson sampling shows
    the winner of one posterior draw, whose probability is unknown; here ``n_draws`` draws
    estimate each candidate's probability of winning (see
    :func:`policies.thompson.win_probabilities`), a floor ``epsilon`` mixes in uniform so no
    candidate that could win gets 0, and the caller samples from exactly those
    probabilities. That is still Thompson sampling (sampling by probability of being best),
    with a logged propensity that is the true one.

    Parameters
    ----------
    l2
        Ridge penalty (prior precision).
    discount
        Forgetting factor per record for non-stationary rewards (1: none); see
        :class:`~policies.linear.LinearPolicy`.
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

    _params = (*LinearPolicy._params, "v", "n_draws", "epsilon")

    def __init__(self, n_features: int, seed: int | None = 0, l2: float = 1.0,
                 discount: float = 1.0, v: float = 0.3, n_draws: int = 64,
                 epsilon: float = 0.01):
        super().__init__(n_features, seed, l2, discount)
        check_param("v", v, low=0.0, low_open=True)
        check_param("n_draws", n_draws, low=1, integer=True)
        check_param("epsilon", epsilon, low=0.0, high=1.0, low_open=True)
        self.v = v
        self.n_draws = n_draws
        self.epsilon = epsilon
        self._chol = None
        self._cov = None

    def _after_update(self) -> None:
        self._chol = None  # caches of the posterior covariance, rebuilt on demand
        self._cov = None

    def _act(self, phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
        b, k, d = phi.shape
        cov = self._cov
        if cov is None:
            cov = self._cov = (self.v * self.v) * self._a_inv
        if b * k >= d and self._chol is None:  # weight-space path: factor once per version
            self._chol = cholesky_psd(cov)
        wins = win_probabilities(phi, mask, self._theta, cov, self._chol, self.n_draws,
                                 self._rng)
        return mix_uniform(wins, mask, self.epsilon)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_chol"] = state["_cov"] = None  # caches: rebuilt on demand
        return state
