"""LinUCB with an explicit exploration floor, so its logs stay usable off-policy."""

from __future__ import annotations

import numpy as np

from policies.base import check_param, greedy, mix_uniform
from policies.linear import LinearPolicy


class LinUCB(LinearPolicy):
    """Chooses the highest upper confidence bound ``phi.theta + alpha * sqrt(phi A^-1 phi)``.

    LinUCB itself is deterministic; a deterministic logging policy leaves off-policy
    estimators nothing to work with, so with probability ``epsilon`` (default 0.02) a uniform
    candidate is shown instead. Reported probabilities are exactly that mixture.

    Parameters
    ----------
    l2, discount
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

    _params = (*LinearPolicy._params, "alpha", "epsilon")

    def __init__(self, n_features: int, seed: int | None = 0, l2: float = 1.0,
                 discount: float = 1.0, alpha: float = 0.5, epsilon: float = 0.02):
        super().__init__(n_features, seed, l2, discount)
        check_param("alpha", alpha, low=0.0)
        check_param("epsilon", epsilon, low=0.0, high=1.0, low_open=True)
        self.alpha = alpha
        self.epsilon = epsilon

    def _act(self, phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
        width = np.sqrt(np.maximum(((phi @ self._a_inv) * phi).sum(axis=2), 0.0))
        return mix_uniform(greedy(phi @ self._theta + self.alpha * width, mask), mask, self.epsilon)
