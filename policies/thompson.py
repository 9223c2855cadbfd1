"""Win probabilities under a Gaussian posterior, estimated from many draws at once: LinTS and
NeuralTS report them instead of one draw's winner, so the logged propensity is the one used.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy.linalg.lapack import dpotrf, dtrtri

from policies import kernels
from policies.base import mix_uniform

#: Decisions scored together, so a chunk's (K, draws, decisions) scores stay a few MB.
CHUNK = 256


def psd_root(cov: np.ndarray) -> np.ndarray:
    """A root ``R`` (``R R^T = cov``) of a symmetric PSD ``cov`` (D, D): its lower Cholesky
    factor, or if rounding left ``cov`` indefinite, the clipped eigen root.

    >>> psd_root(np.array([[4.0, 2.0], [2.0, 2.0]])).round(6).tolist()
    [[2.0, 0.0], [1.0, 1.0]]
    >>> r = psd_root(np.diag([1.0, -1e-3]))   # not factorable: the eigen root
    >>> (r @ r.T).round(6).tolist()
    [[1.0, 0.0], [0.0, 0.0]]
    """
    lower, info = dpotrf(cov, lower=1, clean=1)
    if info == 0:
        return lower
    vals, vecs = np.linalg.eigh(cov)
    return vecs * np.sqrt(np.clip(vals, 0.0, None))


def inverse_and_root(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``A^-1`` (exactly symmetric) of a symmetric positive definite precision ``a`` (D, D)
    and the lower Cholesky factor ``R`` of ``A^-1``, from one Cholesky factor of ``a`` with
    its rows and columns reversed (``J``): ``J A J = M M^T`` gives ``A^-1 = R R^T`` with ``R
    = J M^-T J`` lower triangular. Where ``a`` is not numerically positive definite: its
    symmetrized inverse and ``None``.

    >>> a_inv, root = inverse_and_root(np.array([[4.0, 2.0], [2.0, 2.0]]))
    >>> a_inv.round(12).tolist(), bool(np.allclose(root, psd_root(a_inv)))
    ([[0.5, -0.5], [-0.5, 1.0]], True)
    """
    m, info = dpotrf(a[::-1, ::-1], lower=1, clean=1)
    if info == 0:
        m_inv, info = dtrtri(m, lower=1)
    if info != 0:
        a_inv = np.linalg.inv(a)
        return (a_inv + a_inv.T) * 0.5, None
    root = np.ascontiguousarray(m_inv.T[::-1, ::-1])
    return np.dot(root, root.T), root  # numpy computes R R^T as a symmetric product


def normals(rng: np.random.Generator, scale: float, n_draws: int, width: int) -> np.ndarray:
    """The ``N(0, scale^2)`` normals ((n_draws + 1) // 2, width) of ``n_draws`` antithetic
    draws: ``rng.normal(0, scale, ...)``'s values, scaled in place (faster)."""
    z = rng.standard_normal(((n_draws + 1) // 2, width))
    z *= scale
    return z


def win_probabilities(phi: np.ndarray, mask: np.ndarray | None, a_inv: np.ndarray,
                      b: np.ndarray, theta: np.ndarray | None, root: Callable[[], np.ndarray],
                      scale: float, n_draws: int, epsilon: float, rng: np.random.Generator
                      ) -> np.ndarray:
    """Each candidate's probability (B, K) of the highest score under the ridge posterior
    ``N(theta, scale^2 A^-1)`` (``a_inv`` (D, D), ``b`` (D,), ``theta = A^-1 b``, read by
    batches only: ``None`` will do for one decision), estimated from ``n_draws`` antithetic
    draws with ``rng``, with a floor: each valid candidate (of ``mask`` (B, K), ``None``: all)
    gets at least ``epsilon / K``. Rows sum to 1.

    One decision is :func:`policies.kernels.win_one`. A batch shares weight draws ``theta
    +/- scale R z`` across its rows, ``R = root()`` a root of ``A^-1``, scored in float32 for
    float32 features; exact ties share a draw, and a row of NaN scores gets uniform.

    Examples
    --------
    >>> phi = np.array([[[1.0, 0.0], [0.0, 1.0]]] * 2)
    >>> p = win_probabilities(phi, None, np.eye(2), np.zeros(2), np.zeros(2),
    ...                       lambda: np.eye(2), 1.0, 4000, 0.0, np.random.default_rng(0))
    >>> bool(abs(p[0, 0] - 0.5) < 0.03)   # two independent N(0, 1) scores: a fair coin
    True
    """
    batch, k, d = phi.shape
    if batch == 1:
        probs = np.empty((1, k))
        kernels.win_one(np.ascontiguousarray(phi[0], dtype=np.float64),
                        _all_valid(k) if mask is None else mask[0], a_inv, b,
                        rng.standard_normal(((n_draws + 1) // 2, k)), scale, n_draws, epsilon,
                        probs[0])
        return probs
    z = normals(rng, scale, n_draws, d)
    dtype = np.float32 if phi.dtype == np.float32 else np.float64
    plus = (theta + np.dot(z, root().T)).astype(dtype, copy=False)  # (half, D): theta + R z
    counts = _batch_counts(phi, mask, plus, (2.0 * theta).astype(dtype, copy=False), n_draws)
    total = counts.sum(axis=1, keepdims=True)
    incomparable = total[:, 0] == 0.0  # NaN scores: uniform over the valid candidates
    if incomparable.any():
        counts[incomparable] = 1.0 if mask is None else mask[incomparable]
        total = counts.sum(axis=1, keepdims=True)
    return mix_uniform(counts / total, mask, epsilon)


def _batch_counts(phi: np.ndarray, mask: np.ndarray | None, plus: np.ndarray,
                  twice_theta: np.ndarray, n_draws: int) -> np.ndarray:
    """Draws (B, K) in which each candidate has its row's best score, for the weight draws
    ``plus`` (half, D) and their antithetic twins ``2 theta - plus``."""
    b, k, _ = phi.shape
    half = len(plus)
    ones = np.ones(n_draws, plus.dtype)
    counts = np.empty((k, b), plus.dtype)
    for first in range(0, b, CHUNK):
        xt = phi[first:first + CHUNK].transpose(1, 2, 0)  # (K, D, decisions), a view
        scores = np.empty((k, 2 * half, xt.shape[2]), plus.dtype)
        np.matmul(plus, xt, out=scores[:, :half])
        np.subtract(np.matmul(twice_theta, xt)[:, None, :], scores[:, :half],
                    out=scores[:, half:])
        if 2 * half != n_draws:
            scores = scores[:, :n_draws]
        if mask is not None:
            np.copyto(scores, -np.inf, where=~mask[first:first + CHUNK].T[:, None, :])
        hits = np.equal(scores, scores.max(axis=0), out=scores)
        counts[:, first:first + CHUNK] = np.matmul(ones, hits)
    return counts.T.astype(np.float64)


@functools.cache
def _all_valid(k: int) -> np.ndarray:
    """A mask of ``k`` valid candidates (cached per K; never written)."""
    return np.ones(k, dtype=bool)
