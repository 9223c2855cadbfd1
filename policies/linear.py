"""Online ridge regression shared by the linear policies (Sherman-Morrison updates)."""

from __future__ import annotations

import numpy as np

from policies.base import Policy, check_param


class LinearPolicy(Policy):
    """A policy over an online ridge model ``r ~ phi . theta``.

    The model keeps the precision ``A``, its inverse and ``b``; ``theta = A^-1 b``. Without
    discounting, one record updates ``A^-1`` with Sherman-Morrison in O(D^2) (and joins a
    list of records to add to ``A`` later), and ``A^-1`` is recomputed from ``A`` after a
    mini-batch and every ``RESYNC`` single records, so rounding never accumulates. With ``discount`` (gamma) < 1 each record first forgets::

        A <- gamma A + (1 - gamma) l2 I + x x^T,    b <- gamma b + r x

    so old records fade geometrically while the prior ``l2 I`` stays (``A^-1`` cannot blow
    up in directions no longer seen); that costs one D x D inverse per update call. A
    mini-batch gives exactly what the same records one at a time give.

    Parameters
    ----------
    l2
        Ridge penalty (prior precision).
    discount
        Forgetting factor per record for non-stationary rewards (1: none).
    """

    _params = ("n_features", "seed", "l2", "discount")
    _state = ("_a", "_pending", "_a_inv", "_b", "_theta")
    RESYNC = 256

    def __init__(self, n_features: int, seed: int | None = 0, l2: float = 1.0,
                 discount: float = 1.0):
        super().__init__(n_features, seed)
        check_param("l2", l2, low=0.0, low_open=True)
        check_param("discount", discount, low=0.0, high=1.0, low_open=True)
        self.l2 = l2
        self.discount = discount
        self._a = np.eye(n_features) * float(l2)
        self._pending: list[np.ndarray] = []  # single records not yet added to _a
        self._a_inv = np.eye(n_features) / float(l2)
        self._b = np.zeros(n_features)
        self._theta = np.zeros(n_features)
        self._float32: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def theta(self) -> np.ndarray:
        """The ridge estimate (D,) (a copy)."""
        return self._theta.copy()

    def precision(self) -> np.ndarray:
        """The precision matrix ``A`` (D, D) (a copy)."""
        self._fold_pending()
        return self._a.copy()

    def _fold_pending(self) -> None:
        if self._pending:
            x = np.stack(self._pending)
            self._a = self._a + x.T @ x
            self._pending = []

    def _update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> None:
        n = len(rewards)
        gamma = self.discount
        if gamma == 1.0 and n == 1 and len(self._pending) < self.RESYNC:
            self._update_one(phi[0], float(rewards[0]))
            self._after_update()
            return
        self._fold_pending()
        if gamma < 1.0:
            weights = gamma ** np.arange(n - 1, -1, -1, dtype=np.float64)
            keep = gamma ** n
            xw = phi.T * weights
            a = keep * self._a + xw @ phi
            a[np.diag_indices_from(a)] += (1.0 - keep) * self.l2
            self._b = keep * self._b + xw @ rewards
        else:
            a = self._a + phi.T @ phi
            self._b = self._b + phi.T @ rewards
        self._a = (a + a.T) * 0.5
        a_inv = np.linalg.inv(self._a)
        self._a_inv = (a_inv + a_inv.T) * 0.5
        self._theta = self._a_inv @ self._b
        self._after_refit()
        self._after_update()

    def _update_one(self, x: np.ndarray, r: float) -> tuple[np.ndarray, float]:
        """Learn one record in O(D^2); returns ``A^-1 x`` and ``x A^-1 x`` (before it)."""
        ax = np.dot(self._a_inv, x)
        s = float(np.dot(x, ax))
        gain = ax * (1.0 / (1.0 + s))
        self._a_inv -= gain[:, None] * ax  # Sherman-Morrison
        self._pending.append(x)
        self._b += r * x
        self._theta += (r - float(np.dot(x, self._theta))) * gain  # recursive least squares
        return ax, s

    def _after_refit(self) -> None:
        """Hook: ``A^-1`` was recomputed from ``A`` (not updated by one record)."""

    def _after_update(self) -> None:
        """Hook for subclasses that cache state derived from the model."""
        self._float32 = None

    def _float32_model(self) -> tuple[np.ndarray, np.ndarray]:
        """``A^-1`` and ``theta`` in float32 (cached until the next update), for scoring large
        float32 batches: half the memory traffic, and the ranking they feed is unaffected by
        rounding at 1e-7."""
        if self._float32 is None:
            self._float32 = (self._a_inv.astype(np.float32), self._theta.astype(np.float32))
        return self._float32

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_float32"] = None  # a cache, rebuilt on demand
        return state

    def _after_load(self) -> None:
        self._after_update()

    def predict(self, phi: np.ndarray) -> np.ndarray:
        """Predicted reward of each candidate, shape ``phi.shape[:-1]``."""
        return np.asarray(phi, dtype=np.float64) @ self._theta
