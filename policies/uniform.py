"""Uniform random: the baseline every learner must beat, and a safe logging policy."""

from __future__ import annotations

import numpy as np

from policies.base import Policy


class Uniform(Policy):
    """Chooses uniformly among the valid candidates and learns nothing.

    Examples
    --------
    >>> import numpy as np
    >>> p = Uniform(n_features=2)
    >>> p.act(np.zeros((1, 4, 2)), np.array([[True, True, False, True]])).round(3).tolist()
    [[0.333, 0.333, 0.0, 0.333]]
    """

    _act_normalized = True  # 1/K each: exactly uniform (renormalizing could move it an ulp)

    def _act(self, phi: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        if mask is None:
            return np.full(phi.shape[:2], 1.0 / phi.shape[1])
        return mask / mask.sum(axis=1, keepdims=True)

    def _update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> None:
        pass

    def _learn_one(self, x: np.ndarray, reward: float, propensity: float) -> None:
        pass
