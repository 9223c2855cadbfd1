"""Online ridge regression shared by the linear policies (Sherman-Morrison updates)."""

from __future__ import annotations

import numpy as np

from policies import kernels
from policies.base import Policy, check_param
from policies.forgetting import DRIFT_FACTOR, HALF_LIFE, forgotten, make_forgetting
from policies.thompson import inverse_and_root


class LinearPolicy(Policy):
    """A policy over an online ridge model ``r ~ phi . theta`` that forgets old records.

    The model keeps the precision ``A``, its inverse and ``b``; ``theta = A^-1 b``; each
    record fades what came before (:class:`~policies.forgetting.Forgetting`). One record
    updates ``A``, ``A^-1`` and ``b`` in O(D^2) (:func:`policies.kernels.ridge_step`);
    ``A^-1`` is recomputed from ``A`` after a mini-batch and every ``RESYNC`` single
    records, so rounding never accumulates.

    Parameters
    ----------
    l2
        Ridge penalty (prior precision).
    half_life
        Records after which a record's weight has halved (``None``: never forget); see
        :mod:`policies.forgetting` to choose it.
    discount
        The factor ``lam`` per record, instead of ``half_life``; 1: never forget.
    drift_factor
        How many times faster records are forgotten after a detected change (1: no detector).
    drift_period
        For how many records after a detected change (``None``: a tenth of the half-life).
    """

    _params = ("n_features", "seed", "l2", "discount", "half_life", "drift_factor", "drift_period")
    _state = ("_a", "_a_inv", "_b", "_theta", "_since_resync", "_forget")
    RESYNC = 256
    #: Batches of at least this many float32 candidates are scored in float32 (3.6x the
    #: decisions/s of float64 in bench_policies' batched act; the engine passes float64).
    FLOAT32_ROWS = 512

    def __init__(self, n_features: int, seed: int | None = 0, l2: float = 1.0,
                 discount: float | None = None, half_life: float | None = HALF_LIFE,
                 drift_factor: float = DRIFT_FACTOR, drift_period: int | None = None):
        super().__init__(n_features, seed)
        check_param("l2", l2, low=0.0, low_open=True)
        self._forget = make_forgetting(n_features, half_life, discount, drift_factor,
                                       drift_period)
        self.l2, self.discount, self.half_life = l2, discount, half_life
        self.drift_factor, self.drift_period = drift_factor, drift_period
        self._a = np.eye(n_features) * float(l2)
        self._since_resync = 0  # single records since A^-1 was last computed from A
        self._a_inv = np.eye(n_features) / float(l2)
        self._b = np.zeros(n_features)
        self._theta: np.ndarray | None = np.zeros(n_features)  # None: A^-1 b, not yet computed
        self._float32: tuple[np.ndarray, np.ndarray] | None = None
        self._root: np.ndarray | None = None  # A^-1's lower Cholesky factor (LinTS's batch draws)
        kernels.warm_up()  # compiled (or loaded) now, not during the first decision

    @property
    def theta(self) -> np.ndarray:
        """The ridge estimate (D,) (a copy)."""
        return self._model_theta().copy()

    def _model_theta(self) -> np.ndarray:
        """``theta = A^-1 b``, computed once after each single-record update."""
        theta = self._theta
        if theta is None:
            theta = self._theta = np.dot(self._a_inv, self._b)
        return theta

    def precision(self) -> np.ndarray:
        """The precision matrix ``A`` (D, D) (a copy)."""
        return self._a.copy()

    def _learn_one(self, x: np.ndarray, reward: float, propensity: float) -> None:
        f = self._forget
        if f is None:
            kernels.ridge_step(self._a, self._a_inv, self._b, x, reward, 1.0, 0.0, 0)
        else:
            lam, refresh, j = f.next_record(self.l2 * self.n_features)
            pred, quad = kernels.ridge_step(self._a, self._a_inv, self._b, x, reward, lam,
                                            refresh, j)
            f.observe(reward - pred, quad)
        self._theta = None
        self._after_update()
        self._since_resync += 1
        if self._since_resync >= self.RESYNC:
            self._resync()

    def _update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> None:
        self._refit(phi, rewards)  # a mini-batch (one record goes to _learn_one)

    def _refit(self, phi: np.ndarray, rewards: np.ndarray) -> None:
        """Add records (N, D) to ``A`` and ``b`` (with forgetting) and recompute ``A^-1``."""
        f = self._forget
        if f is None:
            a = self._a + phi.T @ phi
            self._b = self._b + phi.T @ rewards
        else:
            rates = f.schedule(phi, rewards, self._model_theta(), self._a_inv,
                               self.l2 * self.n_features)
            a, self._b = forgotten(self._a, self._b, phi, rewards, *rates)
        self._a = (a + a.T) * 0.5
        self._after_update()
        self._resync()
        self._theta = self._a_inv @ self._b

    def _resync(self) -> None:
        """``A^-1`` computed afresh from ``A`` (exactly symmetric), with the lower Cholesky
        factor of ``A^-1`` that LinTS's batched draws use."""
        self._a_inv, self._root = inverse_and_root(self._a)
        self._since_resync = 0

    def _after_update(self) -> None:
        """Drop the caches derived from the model."""
        self._float32 = self._root = None

    def _float32_model(self) -> tuple[np.ndarray, np.ndarray]:
        """``A^-1`` and ``theta`` in float32 (cached until the next update) for large float32
        batches: half the memory traffic; rounding at 1e-7 leaves rankings alone."""
        if self._float32 is None:
            self._float32 = (self._a_inv.astype(np.float32),
                             self._model_theta().astype(np.float32))
        return self._float32

    def _predictions(self, phi: np.ndarray) -> np.ndarray:
        """``phi theta`` (B, K) in float64; a large float32 batch is multiplied in float32."""
        b, k, d = phi.shape
        if b * k >= self.FLOAT32_ROWS and phi.dtype == np.float32:
            y = np.dot(phi.reshape(b * k, d), self._float32_model()[1])
            return y.reshape(b, k).astype(np.float64)
        return phi @ self._model_theta()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_float32"] = state["_root"] = None  # caches, rebuilt on demand
        return state

    def __setstate__(self, state):
        if "_forget" not in state:  # pickled before forgetting: the model it had
            discount = state.get("discount", 1.0)
            state = {**state, "half_life": None, "drift_factor": DRIFT_FACTOR,
                     "drift_period": None,
                     "_forget": make_forgetting(state["n_features"], None, discount,
                                                DRIFT_FACTOR, None)}
        self.__dict__.update(state)
        self._fold_saved_records()

    def _fold_saved_records(self) -> None:
        """A state saved while single records waited to be added to ``A`` (``_pending``,
        with their weights in ``_pending_forget`` and ``_pending_scale`` under forgetting):
        add them, as that version did at its next resync."""
        state = self.__dict__
        state.setdefault("_since_resync", 0)
        pending = state.pop("_pending", None)
        weights = state.pop("_pending_forget", None)
        scale = state.pop("_pending_scale", 1.0)
        if pending is None:
            return
        if pending:
            x = np.stack(pending)
            if weights:  # A = scale (A + sum_i w_i x_i x_i^T + c_i e_j e_j^T)
                w, c, j = np.array(weights).T
                a = self._a + (x.T * w) @ x
                np.add.at(a.reshape(-1), j.astype(np.int64) * (self.n_features + 1), c)
                self._a = a * scale
            else:
                self._a = self._a + x.T @ x
        self._since_resync = len(pending)

    def _after_load(self) -> None:
        self._fold_saved_records()
        self._after_update()

    def predict(self, phi: np.ndarray) -> np.ndarray:
        """Predicted reward of each candidate, shape ``phi.shape[:-1]``."""
        return np.asarray(phi, dtype=np.float64) @ self._model_theta()
