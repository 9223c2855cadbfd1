"""Compiled kernels (numba) for one decision or one record, where a dozen small numpy calls
cost more than their arithmetic. Cached on disk; :func:`warm_up` compiles or loads them when a
policy is built. Callers draw the random numbers. Numpy oracles: ``tests/oracles_policies.py``.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

_jit = numba.njit(cache=True)  # holds the GIL: calls of microseconds, from one thread


@functools.cache
def warm_up() -> None:
    """Compile (or load from the disk cache) every kernel; once per process."""
    k, d = 2, 3
    a_inv, b = np.eye(d), np.zeros(d)
    linucb_one(np.ones((k, d)), a_inv, b, 1.0, np.empty(k))
    win_one(np.ones((k, d)), np.ones(k, bool), a_inv, b, np.zeros((1, k)), 1.0, 2, 0.1,
            np.empty(k))
    ridge_step(np.eye(d), np.eye(d), np.zeros(d), np.ones(d), 1.0, 1.0, 0.0, 0)
    for mask in (None, np.ones((1, k), bool)):
        for dtype in (np.float64, np.float32):  # (LinUCB scores large float32 batches)
            greedy_mix(np.zeros((1, k), dtype), mask, 0.1, np.empty((1, k)))
        inverse_gap(np.zeros((1, k)), mask, 1.0, np.empty((1, k)))


#: The jitter :func:`win_one`'s factor adds to the diagonal, relative to the mean variance:
#: far below what changes a ranking, enough to factor the covariances of candidates sharing
#: features.
JITTER = 1e-10


@_jit
def _factor_upper(upper):
    """In place: the upper triangle of a symmetric matrix (N, N) plus ``(JITTER * trace / N
    + tiny) I`` becomes ``U = L^T`` with ``L L^T`` that matrix (right-looking, row by row).
    False if a pivot is not positive (also NaN)."""
    n = upper.shape[0]
    trace = 0.0
    for i in range(n):
        trace += upper[i, i]
    jitter = JITTER * trace / n + 2.2250738585072014e-308
    for i in range(n):
        upper[i, i] += jitter
    for r in range(n):
        pivot = upper[r, r]
        if not pivot > 0.0:
            return False
        pivot = math.sqrt(pivot)
        for i in range(r, n):
            upper[r, i] /= pivot
        for c in range(r + 1, n):
            urc = upper[r, c]
            for i in range(c, n):
                upper[c, i] -= urc * upper[r, i]
    return True


@_jit
def linucb_one(x, a_inv, b, alpha, bound):
    """LinUCB's bounds for one decision, ``x`` (K, D) float64 and C-contiguous: ``bound[i] =
    x_i theta + alpha sqrt(x_i A^-1 x_i)`` (the mean alone where the quadratic form is not
    positive), ``x_i theta = (x_i A^-1) b``."""
    xa = np.dot(x, a_inv)  # BLAS
    means = np.dot(xa, b)
    k, d = x.shape
    for i in range(k):
        quad = 0.0
        for m in range(d):
            quad += xa[i, m] * x[i, m]
        bound[i] = means[i] + alpha * math.sqrt(quad) if quad > 0.0 else means[i]


@_jit
def win_one(x, mask, a_inv, b, z, scale, n_draws, epsilon, probs):
    """Thompson sampling's win probabilities for one decision.

    ``x`` (K, D) features (float64, C-contiguous), ``mask`` (K,) bool, ``a_inv`` (D, D) and
    ``b`` (D,) the ridge model (posterior ``N(A^-1 b, v^2 A^-1)``), ``z`` ((n_draws + 1) //
    2, K) standard normals, ``scale`` = v, ``probs`` (K,) the output. Each row of ``z`` gives
    the antithetic score draws ``x theta +/- L (v z)``, ``L`` the Cholesky factor of ``x A^-1
    x^T`` (the last minus draw dropped when ``n_draws`` is odd); each credits its best valid
    candidate (the first of equals).
    ``probs = (1 - epsilon) wins / n_draws + epsilon / n_valid`` (0 where masked); a
    covariance that cannot be factored (NaN) gives uniform over the valid.
    """
    k, d = x.shape
    xa = np.dot(x, a_inv)  # (K, D), BLAS
    rhs = np.empty((d, k + 1))  # [x^T | b]: both products below in one BLAS call
    for m in range(d):
        for i in range(k):
            rhs[m, i] = x[i, m]
        rhs[m, k] = b[m]
    both = np.dot(xa, rhs)  # x A^-1 x^T (its upper triangle is factored) | x theta
    upper, mean = both[:, :k], both[:, k]
    floor = epsilon / np.count_nonzero(mask)
    if not _factor_upper(upper):
        for i in range(k):
            probs[i] = 1.0 / np.count_nonzero(mask) if mask[i] else 0.0
        return
    counts = _best_counts(upper, mean, mask, z, scale, n_draws)
    share = (1.0 - epsilon) / n_draws
    for i in range(k):
        probs[i] = counts[i] * share + floor if mask[i] else 0.0


@_jit
def _best_counts(upper, mean, mask, z, scale, n_draws):
    """Draws ``mean +/- U^T (scale z)`` each candidate wins (the first of equals among the
    valid)."""
    k, half = mean.shape[0], z.shape[0]
    zt = np.empty((k, half))  # scale z, transposed: the loops below run along the draws
    for s in range(half):
        for m in range(k):
            zt[m, s] = z[s, m] * scale
    spread = np.zeros((k, half))  # L z for every draw: rows of U^T z, along the draws
    for m in range(k):
        for i in range(m, k):
            umi = upper[m, i]
            for s in range(half):
                spread[i, s] += umi * zt[m, s]
    top_plus = np.empty(half)
    top_minus = np.empty(half)
    best_plus = np.full(half, -1)
    best_minus = np.full(half, -1)
    for i in range(k):
        if mask[i]:
            mi = mean[i]
            for s in range(half):
                up = mi + spread[i, s]
                down = mi - spread[i, s]
                if best_plus[s] < 0 or up > top_plus[s]:
                    top_plus[s] = up
                    best_plus[s] = i
                if best_minus[s] < 0 or down > top_minus[s]:
                    top_minus[s] = down
                    best_minus[s] = i
    counts = np.zeros(k)
    for s in range(half):
        counts[best_plus[s]] += 1.0
        if half + s < n_draws:
            counts[best_minus[s]] += 1.0
    return counts


@_jit
def greedy_mix(scores, mask, epsilon, probs):
    """``probs`` (B, K) from ``scores`` (B, K): in each row ``1 - epsilon`` split among the
    best valid scores (exact ties share it) plus ``epsilon`` spread over the valid candidates
    (``mask`` (B, K) bool, None: all valid); 0 where masked. A row with no comparable valid
    score (NaN) gets uniform over the valid."""
    b, k = scores.shape
    for r in range(b):
        top = -np.inf
        n_valid = n_best = 0
        for i in range(k):
            if mask is None or mask[r, i]:
                n_valid += 1
                s = scores[r, i]
                if s > top:
                    top, n_best = s, 1
                elif s == top:
                    n_best += 1
        floor = epsilon / n_valid if n_best else 1.0 / n_valid
        best = (1.0 - epsilon) / n_best + floor if n_best else floor
        for i in range(k):
            if mask is None or mask[r, i]:
                probs[r, i] = best if scores[r, i] == top else floor
            else:
                probs[r, i] = 0.0


@_jit
def inverse_gap(y, mask, gamma, probs):
    """SquareCB's inverse-gap weighting, ``probs`` (B, K) from predicted rewards ``y`` (B,
    K): a valid candidate ``i`` other than its row's best (the first of equals) gets ``1 /
    (n_valid + gamma (y_best - y_i))``, the best the rest; 0 where ``mask`` (B, K) is False
    (None: all valid)."""
    b, k = y.shape
    for r in range(b):
        best, n_valid = -1, 0
        for i in range(k):
            if mask is None or mask[r, i]:
                n_valid += 1
                if best < 0 or y[r, i] > y[r, best]:
                    best = i
        top, total = y[r, best], 0.0
        for i in range(k):
            if i != best and (mask is None or mask[r, i]):
                probs[r, i] = 1.0 / (n_valid + gamma * (top - y[r, i]))
                total += probs[r, i]
            else:
                probs[r, i] = 0.0
        probs[r, best] = 1.0 - total


@_jit
def ridge_step(a, a_inv, b, x, reward, lam, refresh, j):
    """One record ``x`` (D,) with ``reward`` into a ridge model with forgetting, in place,
    in O(D^2): with ``P = A^-1``,

    ``A <- lam A + x x^T + refresh e_j e_j^T``,  ``b <- lam b + reward x``,

    ``P`` by Sherman-Morrison twice in one pass: ``P1 = (P - P x x^T P / (lam + x P x)) /
    lam``, then ``P1 - w w^T`` with ``w = sqrt(refresh) P1 e_j / sqrt(1 + refresh P1_jj)``
    (``lam`` = 1 and ``refresh`` = 0: the plain ridge step). ``A`` stays exactly symmetric
    (its caller recomputes ``P`` from it now and then, so rounding in ``P`` never
    accumulates). Returns ``(x theta, x P x)`` from before the record: its prediction and
    its leverage.
    """
    d = x.shape[0]
    ax = np.zeros(d)
    for jj in range(d):
        xj = x[jj]
        if xj != 0.0:
            for m in range(d):  # P is symmetric: its row jj is its column jj
                ax[m] += xj * a_inv[jj, m]
    quad = 0.0
    for jj in range(d):
        quad += x[jj] * ax[jj]
    pred = 0.0
    for m in range(d):
        pred += ax[m] * b[m]
    scale = -1.0 / (lam + quad)
    w = np.zeros(d)
    if refresh > 0.0:  # P1 e_j from P's row j, before the pass overwrites it
        axj = scale * ax[j]
        for m in range(d):
            w[m] = (a_inv[j, m] + axj * ax[m]) / lam
        f = math.sqrt(refresh / (1.0 + refresh * w[j]))
        for m in range(d):
            w[m] *= f
    if lam == 1.0 and refresh == 0.0:  # the plain step
        for i in range(d):
            ci = scale * ax[i]
            for m in range(d):
                a_inv[i, m] += ci * ax[m]
        for m in range(d):
            b[m] += reward * x[m]
        for i in range(d):
            xi = x[i]
            for m in range(d):
                a[i, m] += xi * x[m]
    else:
        inv_lam = 1.0 / lam
        for i in range(d):
            ci = scale * ax[i]
            wi = w[i]
            for m in range(d):
                a_inv[i, m] = (a_inv[i, m] + ci * ax[m]) * inv_lam - wi * w[m]
        for m in range(d):
            b[m] = lam * b[m] + reward * x[m]
        for i in range(d):
            xi = x[i]
            for m in range(d):
                a[i, m] = lam * a[i, m] + xi * x[m]
        a[j, j] += refresh
    return pred, quad
