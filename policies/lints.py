"""Linear Thompson sampling that reports each candidate's probability of winning."""

from __future__ import annotations

import numpy as np

from policies.base import check_param, mix_uniform
from policies.linear import LinearPolicy


class LinTS(LinearPolicy):
    """Linear Thompson sampling with honest propensities.

    The posterior of the ridge model is ``N(theta, v^2 A^-1)``. Plain Thompson sampling shows
    the winner of one posterior draw, whose probability is unknown; here ``n_draws`` draws
    estimate each candidate's probability of winning, a floor ``epsilon`` mixes in uniform
    so no candidate that could win gets 0, and the caller samples from exactly those
    probabilities. That is still Thompson sampling (sampling by probability of being best),
    with a logged propensity that is the true one.

    Parameters
    ----------
    v
        Posterior scale (exploration strength).
    n_draws
        Posterior draws per decision used to estimate win probabilities.
    epsilon
        Uniform floor.
    discount
        Forgetting factor for non-stationary rewards (1: none).

    Examples
    --------
    >>> import numpy as np
    >>> p = LinTS(n_features=2, seed=0)
    >>> x = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> for _ in range(50):
    ...     _ = p.update(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 0.0]), np.ones(2) / 2)
    >>> probs = p.act(x)
    >>> bool(probs[0, 0] > 0.9), bool(probs[0, 1] > 0)
    (True, True)
    """

    _params = (*LinearPolicy._params, "v", "n_draws", "epsilon")

    def __init__(self, n_features: int, seed: int | None = 0, l2: float = 1.0,
                 discount: float = 1.0, v: float = 0.3, n_draws: int = 128,
                 epsilon: float = 0.01):
        super().__init__(n_features, seed, l2, discount)
        check_param("v", v, low=0.0, low_open=True)
        check_param("n_draws", n_draws, low=1, integer=True)
        check_param("epsilon", epsilon, low=0.0, high=1.0, low_open=True)
        self.v = v
        self.n_draws = n_draws
        self.epsilon = epsilon
        self._chol = None

    def _after_update(self) -> None:
        self._chol = None

    def _act(self, phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self._chol is None:
            self._chol = np.linalg.cholesky(self._a_inv + 1e-12 * np.eye(self.n_features))
        z = self._rng.standard_normal((self.n_draws, self.n_features))
        thetas = self._theta + self.v * z @ self._chol.T  # (S, D)
        scores = phi @ thetas.T  # (B, K, S)
        scores[~mask] = -np.inf
        winners = scores.argmax(axis=1)  # (B, S)
        b, k = mask.shape
        counts = np.zeros((b, k))
        np.add.at(counts, (np.repeat(np.arange(b), self.n_draws), winners.ravel()), 1.0)
        return mix_uniform(counts / self.n_draws, mask, self.epsilon)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_chol"] = None
        return state
