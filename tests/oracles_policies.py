"""Plain numpy statements of the policies' compiled kernels (``policies/kernels.py``): what
each kernel must compute, for the tests to check it against."""

from __future__ import annotations

import math

import numpy as np

TINY = float(np.finfo(np.float64).tiny)


def cholesky(cov: np.ndarray) -> np.ndarray | None:
    """The factor :func:`policies.kernels.win_one` draws with: the lower one of ``cov`` plus ``(1e-10 * trace
    / N + tiny) I`` (LAPACK's), or ``None``."""
    n = len(cov)
    try:
        return np.linalg.cholesky(cov + np.eye(n) * (1e-10 * np.trace(cov) / n + TINY))
    except np.linalg.LinAlgError:
        return None


def win_one(x, mask, a_inv, b, z, n_draws, epsilon) -> np.ndarray:
    """:func:`policies.kernels.win_one`: (K,) probabilities from the antithetic score draws
    ``x theta +/- L z`` (each draw's first best valid candidate)."""
    x = x.astype(np.float64)
    k = len(x)
    xa = x @ a_inv
    lower = cholesky(xa @ x.T)
    valid = mask.sum()
    if lower is None:
        return np.where(mask, 1.0 / valid, 0.0)
    spread = z @ lower.T
    scores = np.concatenate((spread, -spread))[:n_draws] + xa @ b
    scores[:, ~mask] = -np.inf
    wins = np.bincount(scores.argmax(axis=1), minlength=k) / n_draws
    return np.where(mask, (1.0 - epsilon) * wins + epsilon / valid, 0.0)


def linucb_one(x, a_inv, b, alpha) -> np.ndarray:
    """:func:`policies.kernels.linucb_one`: ``x theta + alpha sqrt(x A^-1 x)`` per row (the
    mean alone where the quadratic form is not positive)."""
    x = x.astype(np.float64)
    quad = np.einsum("ij,jk,ik->i", x, a_inv, x)
    mean = x @ a_inv @ b
    return np.where(quad > 0, mean + alpha * np.sqrt(np.maximum(quad, 0.0)), mean)


def ridge_step(a_inv, b, x, reward, lam, refresh, j):
    """:func:`policies.kernels.ridge_step` on copies: the new ``A^-1`` and ``b``, and the
    prediction and leverage before the record."""
    ax = a_inv @ x
    quad, pred = float(x @ ax), float(ax @ b)
    p1 = (a_inv - np.outer(ax, ax) / (lam + quad)) / lam
    if refresh > 0.0:
        w = p1[j] * math.sqrt(refresh / (1.0 + refresh * p1[j, j]))
        p1 = p1 - np.outer(w, w)
    return p1, lam * b + reward * x, pred, quad


def greedy_mix(scores, mask, epsilon) -> np.ndarray:
    """:func:`policies.kernels.greedy_mix`: ``1 - epsilon`` split among each row's best valid
    scores, ``epsilon`` over the valid, 0 where masked."""
    valid = np.ones(scores.shape, bool) if mask is None else mask
    s = np.where(valid, scores, -np.inf)
    best = s == s.max(axis=1, keepdims=True)
    share = (1.0 - epsilon) * best / best.sum(axis=1, keepdims=True)
    return np.where(valid, share + epsilon / valid.sum(axis=1, keepdims=True), 0.0)


def inverse_gap(y, mask, gamma) -> np.ndarray:
    """:func:`policies.kernels.inverse_gap`: ``1 / (n_valid + gamma gap)`` off each row's
    best valid prediction (the first of equals), the rest on it, 0 where masked."""
    valid = np.ones(y.shape, bool) if mask is None else mask
    y = np.where(valid, y, -np.inf)
    rows, best = np.arange(len(y)), y.argmax(axis=1)
    probs = 1.0 / (valid.sum(axis=1, keepdims=True) + gamma * (y[rows, best][:, None] - y))
    probs[rows, best] = 0.0
    probs[rows, best] = 1.0 - probs.sum(axis=1)
    return probs
