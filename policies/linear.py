"""Online ridge regression shared by the linear policies (Sherman-Morrison updates)."""

from __future__ import annotations

import numpy as np

from policies.base import Policy, check_param


class LinearPolicy(Policy):
    """A policy over an online ridge model ``r ~ phi . theta``.

    The model keeps ``A = lambda I + sum gamma^(t-s) x x^T`` through its inverse, updated with
    Sherman-Morrison for single records and the Woodbury identity for mini-batches, and
    ``b = sum gamma^(t-s) r x``. ``discount`` (gamma) < 1 forgets old records geometrically,
    which tracks non-stationary rewards.
    """

    _params = ("n_features", "seed", "l2", "discount")
    _state = ("_a_inv", "_b", "_theta")

    def __init__(self, n_features: int, seed: int | None = 0, l2: float = 1.0,
                 discount: float = 1.0):
        super().__init__(n_features, seed)
        check_param("l2", l2, low=0.0, low_open=True)
        check_param("discount", discount, low=0.0, high=1.0, low_open=True)
        self.l2 = l2
        self.discount = discount
        self._a_inv = np.eye(n_features) / l2
        self._b = np.zeros(n_features)
        self._theta = np.zeros(n_features)

    def _update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> None:
        a_inv = self._a_inv
        if self.discount < 1.0:
            # forgetting: (gamma A)^-1 = A^-1 / gamma per record, b decays alike
            g = self.discount ** len(rewards)
            a_inv = a_inv / g
            self._b = self._b * g
        if len(rewards) == 1:
            x = phi[0]
            ax = a_inv @ x
            a_inv = a_inv - np.outer(ax, ax) / (1.0 + x @ ax)
        else:  # Woodbury: (A + X^T X)^-1
            ax = a_inv @ phi.T  # (D, N)
            inner = np.eye(len(rewards)) + phi @ ax
            a_inv = a_inv - ax @ np.linalg.solve(inner, ax.T)
        self._a_inv = (a_inv + a_inv.T) / 2.0
        self._b = self._b + phi.T @ rewards
        self._theta = self._a_inv @ self._b
        self._after_update()

    def _after_update(self) -> None:
        """Hook for subclasses that cache derived state."""

    def predict(self, phi: np.ndarray) -> np.ndarray:
        """Predicted reward of each candidate, shape phi.shape[:-1]."""
        return np.asarray(phi, dtype=np.float64) @ self._theta
