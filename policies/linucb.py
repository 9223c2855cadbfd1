"""LinUCB with an explicit exploration floor, so its logs stay usable off-policy."""

from __future__ import annotations

import numpy as np

from policies import kernels
from policies.base import check_param, greedy_mix
from policies.forgetting import DRIFT_FACTOR, HALF_LIFE
from policies.linear import LinearPolicy


class LinUCB(LinearPolicy):
    """Chooses the highest upper confidence bound ``phi.theta + alpha * sqrt(phi A^-1 phi)``.

    With probability ``epsilon`` a uniform candidate is shown instead, so that off-policy
    estimators have a stochastic log; reported probabilities are exactly that mixture.

    Parameters
    ----------
    l2, half_life, discount, drift_factor, drift_period
        Of the ridge model (see :class:`~policies.linear.LinearPolicy`).
    alpha
        Width of the confidence bound (exploration strength).
    epsilon
        Probability of a uniform candidate instead of the best bound.

    Examples
    --------
    >>> import numpy as np
    >>> p = LinUCB(n_features=2, alpha=1.0)
    >>> probs = p.act(np.array([[[1.0, 0.0], [0.0, 2.0]]]))
    >>> probs.round(2).tolist()   # the less explored direction has the wider bound
    [[0.01, 0.99]]
    """

    _act_normalized = True
    _params = (*LinearPolicy._params, "alpha", "epsilon")
    #: Candidates whose confidence widths are computed together.
    CHUNK_ROWS = 1024

    def __init__(self, n_features: int, seed: int | None = 0, l2: float = 1.0,
                 discount: float | None = None, half_life: float | None = HALF_LIFE,
                 drift_factor: float = DRIFT_FACTOR, drift_period: int | None = None,
                 alpha: float = 0.5, epsilon: float = 0.02):
        super().__init__(n_features, seed, l2, discount, half_life, drift_factor, drift_period)
        check_param("alpha", alpha, low=0.0)
        check_param("epsilon", epsilon, low=0.0, high=1.0, low_open=True)
        self.alpha, self.epsilon = alpha, epsilon

    def _act(self, phi: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        b, k, d = phi.shape
        if b == 1:  # one decision, masked or not: its K bounds in one compiled call
            bound = np.empty(k)
            kernels.linucb_one(np.ascontiguousarray(phi[0], dtype=np.float64), self._a_inv,
                               self._b, self.alpha, bound)
            return greedy_mix(bound[None], mask, self.epsilon)
        x = phi.reshape(b * k, d)
        if b * k >= self.FLOAT32_ROWS and x.dtype == np.float32:  # see FLOAT32_ROWS
            a_inv, theta = self._float32_model()
        else:
            a_inv, theta = self._a_inv, self._model_theta()
        bound = np.dot(x, theta)
        for first in range(0, b * k, self.CHUNK_ROWS):  # a few hundred kB of products at a time
            rows = x[first:first + self.CHUNK_ROWS]
            quad = np.einsum("ij,ij->i", np.dot(rows, a_inv), rows)  # phi A^-1 phi^T, by row
            np.maximum(quad, 0.0, out=quad)
            bound[first:first + self.CHUNK_ROWS] += self.alpha * np.sqrt(quad, out=quad)
        return greedy_mix(bound.reshape(b, k), mask, self.epsilon)
