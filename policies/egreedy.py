"""Epsilon-greedy over an online ridge model."""

from __future__ import annotations

import numpy as np

from policies.base import check_param, greedy_mix
from policies.forgetting import DRIFT_FACTOR, HALF_LIFE
from policies.linear import LinearPolicy


class EpsilonGreedy(LinearPolicy):
    """Greedy on the ridge prediction with probability ``1 - epsilon``, uniform otherwise.

    Probabilities are exact: ``(1 - epsilon) * 1[best] + epsilon / K`` (exact ties for the
    best split its share).

    Parameters
    ----------
    l2, half_life, discount, drift_factor, drift_period
        Of the ridge model (see :class:`~policies.linear.LinearPolicy`).
    epsilon
        Probability of a uniform candidate.

    Examples
    --------
    >>> import numpy as np
    >>> p = EpsilonGreedy(n_features=1, epsilon=0.1)
    >>> _ = p.update(np.array([[1.0]]), np.array([1.0]), np.array([0.5]))
    >>> p.act(np.array([[[1.0], [0.0]]])).round(3).tolist()
    [[0.95, 0.05]]
    """

    _act_normalized = True
    _params = (*LinearPolicy._params, "epsilon")

    def __init__(self, n_features: int, seed: int | None = 0, l2: float = 1.0,
                 discount: float | None = None, half_life: float | None = HALF_LIFE,
                 drift_factor: float = DRIFT_FACTOR, drift_period: int | None = None,
                 epsilon: float = 0.05):
        super().__init__(n_features, seed, l2, discount, half_life, drift_factor, drift_period)
        check_param("epsilon", epsilon, low=0.0, high=1.0, low_open=True)
        self.epsilon = epsilon

    def _act(self, phi: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        return greedy_mix(self._predictions(phi), mask, self.epsilon)
