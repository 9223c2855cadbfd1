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

    def _act(self, phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
        # The scores of the K candidates under a posterior draw are jointly Gaussian:
        # N(phi theta, v^2 phi A^-1 phi^T). Sampling them directly costs K x K per decision
        # instead of D x D (no Cholesky of A^-1 after every update).
        b, k, _ = phi.shape
        mean = phi @ self._theta  # (B, K)
        m = phi @ self._a_inv  # (B, K, D)
        cov = (self.v ** 2) * np.matmul(m, phi.transpose(0, 2, 1))  # (B, K, K)
        cov += 1e-9 * np.eye(k)
        chol = np.linalg.cholesky(cov)
        z = self._rng.standard_normal((b, self.n_draws, k))
        scores = mean[:, None, :] + np.matmul(z, chol.transpose(0, 2, 1))  # (B, S, K)
        scores = np.where(mask[:, None, :], scores, -np.inf)
        winners = scores.argmax(axis=2)  # (B, S)
        counts = np.zeros((b, k))
        np.add.at(counts, (np.repeat(np.arange(b), self.n_draws), winners.ravel()), 1.0)
        return mix_uniform(counts / self.n_draws, mask, self.epsilon)

