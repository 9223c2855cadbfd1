"""Online ridge regression shared by the linear policies (Sherman-Morrison updates)."""

from __future__ import annotations

import numpy as np

from policies import kernels
from policies.base import Policy, check_param

try:  # BLAS updates in place (numpy builds a temporary first, a D x D one for the outer
    # product); LAPACK inverts a triangular factor directly
    from scipy.linalg.blas import daxpy as _daxpy
    from scipy.linalg.blas import dger as _dger
    from scipy.linalg.lapack import dpotrf as _dpotrf
    from scipy.linalg.lapack import dtrtri as _dtrtri
except ImportError:  # scipy is optional: the numpy paths compute the same results
    _daxpy = _dger = _dpotrf = _dtrtri = None


def inverse_and_root(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``A^-1`` (exactly symmetric) and a square root ``R`` of it (``R R^T = A^-1``) of a
    symmetric positive definite ``a``, from its Cholesky factor: ``A = L L^T`` gives ``A^-1
    = L^-T L^-1`` and ``R = L^-T``. If ``a`` is not numerically positive definite: its
    symmetrized inverse and ``None``.

    Examples
    --------
    >>> a_inv, root = inverse_and_root(np.array([[4.0, 2.0], [2.0, 2.0]]))
    >>> np.allclose(a_inv, [[0.5, -0.5], [-0.5, 1.0]]), np.allclose(root @ root.T, a_inv)
    (True, True)
    """
    lower = inv_lower = None
    if _dpotrf is not None:
        lower, info = _dpotrf(a, 1, 1)
        if info == 0:
            inv_lower, info = _dtrtri(lower, 1)
            inv_lower = inv_lower if info == 0 else None
    else:
        try:
            inv_lower = np.linalg.inv(np.linalg.cholesky(a))
        except np.linalg.LinAlgError:
            pass
    if inv_lower is None:
        a_inv = np.linalg.inv(a)
        return (a_inv + a_inv.T) * 0.5, None
    root = inv_lower.T
    return np.dot(root, inv_lower), root  # numpy computes R R^T as a symmetric product


def add_outer(m: np.ndarray, alpha: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``m + alpha * outer(x, y)`` for float64 ``m`` (D, D) and ``x``, ``y`` (D,), written
    into ``m`` when it is C-contiguous; returns the result (use it: another ``m`` gets a new
    array).

    Examples
    --------
    >>> m = np.eye(2)
    >>> add_outer(m, -1.0, np.array([1.0, 2.0]), np.array([0.5, 1.0])).tolist()
    [[0.5, -1.0], [-1.0, -1.0]]
    >>> m.tolist()
    [[0.5, -1.0], [-1.0, -1.0]]
    """
    if not m.flags.c_contiguous:
        return m + np.multiply.outer(x * alpha, y)
    if _dger is not None:  # m^T is a Fortran-ordered view of m: BLAS adds alpha y x^T to it
        return _dger(alpha, y, x, 1, 1, m.T, 1, 1, 1).T
    m -= np.multiply.outer(x * -alpha, y)
    return m


def add_scaled(y: np.ndarray, alpha: float, x: np.ndarray) -> np.ndarray:
    """``y + alpha * x`` for float64 vectors, written into ``y`` when it is contiguous;
    returns the result (use it).

    Examples
    --------
    >>> y = np.ones(2)
    >>> add_scaled(y, 2.0, np.array([1.0, -1.0])).tolist(), y.tolist()
    ([3.0, -1.0], [3.0, -1.0])
    """
    if not y.flags.c_contiguous:
        return y + alpha * x
    if _daxpy is not None:
        return _daxpy(x, y, len(x), alpha)
    y += alpha * x
    return y


class LinearPolicy(Policy):
    """A policy over an online ridge model ``r ~ phi . theta``.

    The model keeps the precision ``A``, its inverse and ``b``; ``theta = A^-1 b``. Without
    discounting, one record updates ``A^-1`` with Sherman-Morrison in O(D^2) (and joins a
    list of records to add to ``A`` later), and ``A^-1`` is recomputed from ``A`` after a
    mini-batch and every ``RESYNC`` single records, so rounding never accumulates. With
    ``discount`` (gamma) < 1 each record first forgets::

        A <- gamma A + (1 - gamma) l2 I + x x^T,    b <- gamma b + r x

    so old records fade geometrically while the prior ``l2 I`` stays (``A^-1`` cannot blow
    up in directions no longer seen); that costs one D x D inverse per update call (the
    prior term makes each record a full-rank change, so Sherman-Morrison does not apply).
    One record at a time, both cases run as one compiled call each (:mod:`policies.kernels`)
    where numba is available. A mini-batch gives exactly what the same records one at a time
    give. After a single record ``theta`` is left to be recomputed when next needed (one
    D x D product, which a decision that computes ``phi A^-1`` anyway replaces by
    ``(phi A^-1) b``).

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
    #: Batches of at least this many float32 candidates are scored in float32.
    FLOAT32_ROWS = 512

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
        self._theta: np.ndarray | None = np.zeros(n_features)  # None: A^-1 b, not yet computed
        self._float32: tuple[np.ndarray, np.ndarray] | None = None
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
        self._fold_pending()
        return self._a.copy()

    def _fold_pending(self) -> None:
        if self._pending:
            x = np.stack(self._pending)
            self._a = self._a + x.T @ x
            self._pending = []

    def _learn_one(self, x: np.ndarray, reward: float, propensity: float) -> None:
        if self.discount == 1.0 and len(self._pending) < self.RESYNC:
            self._update_one(x, reward)
            self._after_update_one()
            return
        elif self.discount != 1.0 and kernels.AVAILABLE:  # _refit's algebra, in one call
            if not kernels.discounted_ridge_step(self._a, self._a_inv, self._b, x, reward,
                                                 self.discount, self.l2):
                self._a_inv = inverse_and_root(self._a)[0]
            self._theta = None
        else:  # a resync is due, or discounting without the kernels
            self._refit(x[None], np.array([reward]))
            return
        self._after_update()

    def _update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> None:
        self._refit(phi, rewards)  # a mini-batch (one record goes to _learn_one)

    def _refit(self, phi: np.ndarray, rewards: np.ndarray) -> None:
        """Add records (N, D) to ``A`` and ``b`` (discounted) and recompute ``A^-1``."""
        n = len(rewards)
        gamma = self.discount
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
        self._a_inv, root = inverse_and_root(self._a)
        self._theta = self._a_inv @ self._b
        self._after_update()
        self._after_refit(root)

    def _update_one(self, x: np.ndarray, r: float) -> None:
        """Learn one record in O(D^2) (:meth:`_ridge_step`); ``A`` itself is updated at the
        next refit."""
        self._ridge_step(x, r)
        self._pending.append(x)
        self._theta = None

    def _ridge_step(self, x: np.ndarray, r: float) -> None:
        """Sherman-Morrison on ``A^-1`` and ``b += r x`` (one compiled call where numba is
        available). Subclasses that keep something derived from ``A^-1`` update it here."""
        if kernels.AVAILABLE:
            kernels.ridge_step(self._a_inv, self._b, x, r)
        else:
            ax = np.dot(self._a_inv, x)
            self._a_inv = add_outer(self._a_inv, -1.0 / (1.0 + float(np.dot(x, ax))), ax, ax)
            self._b = add_scaled(self._b, r, x)

    def _after_refit(self, root: np.ndarray | None) -> None:
        """Hook: ``A^-1`` was recomputed from ``A`` (not updated by one record), with a
        square root ``root`` of it (``None`` if ``A`` was not numerically positive definite)."""

    def _after_update(self) -> None:
        """Hook for subclasses that cache state derived from the model."""
        self._float32 = None

    def _after_update_one(self) -> None:
        """Hook: one record was learned by :meth:`_update_one` (a subclass whose
        :meth:`_ridge_step` updates what it caches keeps it here)."""
        self._after_update()

    def _float32_model(self) -> tuple[np.ndarray, np.ndarray]:
        """``A^-1`` and ``theta`` in float32 (cached until the next update), for scoring large
        float32 batches: half the memory traffic, and the ranking they feed is unaffected by
        rounding at 1e-7."""
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
        state["_float32"] = None  # a cache, rebuilt on demand
        return state

    def _after_load(self) -> None:
        self._float32 = None

    def predict(self, phi: np.ndarray) -> np.ndarray:
        """Predicted reward of each candidate, shape ``phi.shape[:-1]``."""
        return np.asarray(phi, dtype=np.float64) @ self._model_theta()
