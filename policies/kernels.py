"""Compiled kernels (numba) for learning and deciding one record at a time, where a dozen
small numpy calls cost more than the arithmetic they do.

``numba`` is a dependency. The policies use these kernels when :data:`AVAILABLE` is true and
fall back to their numpy paths, which compute the same quantities up to rounding, when it is
false: numba cannot be imported (a Python it does not support yet), or the environment sets
``LOOPWISE_NUMBA=0``. Kernels are compiled on first use and cached on disk (``cache=True``):
the first process on a machine pays a few seconds, later ones load the cache in a fraction of
a second; :func:`warm_up` does either up front, when a linear policy is built, so no
decision pays for it.

Random numbers are drawn by the callers with their own ``numpy.random.Generator``, so a
kernel consumes exactly the draws the numpy path would.
"""

from __future__ import annotations

import math
import os

import numpy as np

try:
    if os.environ.get("LOOPWISE_NUMBA", "1") == "0":
        raise ImportError("LOOPWISE_NUMBA=0")
    import numba
except ImportError:  # numpy paths only
    numba = None

#: True where the policies use the kernels below (numba importable, not switched off).
AVAILABLE = numba is not None


def _jit(fn):
    if numba is None:
        return fn
    return numba.njit(cache=True)(fn)  # holds the GIL: calls of microseconds, from one thread


def _jit_typed(signature):
    """:func:`_jit` with one explicit signature, ``signature(numba.types)``: one version for
    every layout it admits. Compiled (or loaded from the disk cache) at the first call, as
    :func:`_jit`'s kernels are, not when the module loads (an explicit signature compiles
    eagerly: every import would pay for it); the compiled function then replaces the
    module's name, so later calls go straight to it."""
    def decorate(fn):
        if numba is None:
            return fn

        compiled = []  # (kept here too: a name imported before the first call still works)

        def first_call(*args):
            if not compiled:
                compiled.append(numba.njit(signature(numba.types), cache=True)(fn))
                globals()[fn.__name__] = compiled[0]
            return compiled[0](*args)

        first_call.__name__, first_call.__doc__ = fn.__name__, fn.__doc__
        return first_call
    return decorate


def _read_only(t, ndim: int):
    """A float64 array argument that may be read-only or not, contiguous or not (one type
    for all, so that no new compilation waits for a request: read-only arrays come back
    from Ray, and a recurring list's item features are read-only)."""
    return t.Array(t.float64, ndim, "A", readonly=True)


_warm = False


def warm_up() -> None:
    """Compile (or load from the disk cache) every kernel for float32 and float64 features,
    so that the first real decision does not pay for it; once per process (the linear
    policies call it when built). A no-op without numba."""
    global _warm
    if _warm or not AVAILABLE:
        return
    _warm = True
    k, d = 2, 3
    a_inv, b = np.eye(d), np.zeros(d)
    for dtype in (np.float32, np.float64):
        lints_one(np.ones((k, d), dtype), np.ones(k, bool), a_inv, b, np.zeros((1, k)), 2,
                  0.1, np.empty(k))
        linucb_one(np.ones((k, d), dtype), a_inv, b, 1.0, np.empty(k))
        lints_one_wide(np.ones((d + 1, d), dtype), np.ones(d + 1, bool), b, a_inv,
                       np.zeros((1, d)), 2, 0.1, np.empty(d + 1))
    funk_sgd(np.ones((1, d)), np.ones((1, d)), np.zeros(1, np.int64), np.zeros(1, np.int64),
             np.ones(1), 0.1, 0.1, 0.0, 1.0)
    funk_sgd_one(np.ones((1, d)), np.ones((1, d)), 0, 0, 1.0, 0.1, 0.1, 0.0, 1.0)
    row_dots(np.ones((1, d)), np.zeros(k, np.int64), np.ones(d), np.empty((k, 2)), 1)
    topic_columns(np.ones(k), np.ones(k), 0.5, 2.0, 0.5, np.empty((k, 5)))
    topic_columns(np.ones(k), np.empty(0), 0.5, 2.0, 0.5, np.empty((k, 5)))
    max_abs(np.ones((k, d)))
    fill_features(np.empty((k, 1 + 2 + 2 + d + d * d + d)), np.ones(2), np.ones((k, 2)),
                  np.ones((k, d)), np.ones(d))
    x = np.ones(d)
    cholesky_jittered(np.eye(d), np.empty((d, d)))
    ridge_step(np.eye(d), np.zeros(d), x, 1.0, 1.0, 0.0, 0, np.empty((0, 0)))
    ridge_step(np.eye(d), np.zeros(d), x, 1.0, 0.9, 0.1, 1, np.eye(d))


@_jit
def _cholesky_upper(upper):
    """In place: the upper triangle of a symmetric matrix (N, N) becomes ``U = L^T`` with
    ``L L^T`` the matrix (right-looking, row by row, contiguous inner loops; the lower
    triangle is not read). False if a pivot is not positive (also NaN)."""
    n = upper.shape[0]
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
def cholesky_jittered(cov, lower):
    """:func:`policies.thompson.cholesky_psd`'s factorizations (numba): ``lower`` (N, N)
    becomes the lower Cholesky factor of ``cov`` plus ``jitter * (max |diag| + 1e-12)`` on
    the diagonal, for the first jitter of 1e-12, 1e-9, 1e-6 that factors (the upper triangle
    of ``cov`` is read). False, ``lower`` undefined, if none does (the caller then takes
    ``cholesky_psd``'s eigendecomposition)."""
    n = cov.shape[0]
    scale = 0.0
    for i in range(n):
        scale = max(scale, abs(cov[i, i]))
    scale += 1e-12
    upper = np.empty((n, n))
    for jitter in (1e-12, 1e-9, 1e-6):
        for r in range(n):
            for c in range(r, n):
                upper[r, c] = cov[r, c]
            upper[r, r] += jitter * scale
        if _cholesky_upper(upper):
            for r in range(n):
                for c in range(n):
                    lower[r, c] = upper[c, r] if c <= r else 0.0
            return True
    return False


@_jit
def _times_a_inv(x, a_inv):
    """``x A^-1`` (K, D) over each row's non-zero features, with those features' indices
    (K, D) and counts (K,)."""
    k, d = x.shape
    nz = np.empty((k, d), np.int64)
    n_nz = np.zeros(k, np.int64)
    xa = np.zeros((k, d))
    for i in range(k):
        for j in range(d):
            xij = np.float64(x[i, j])
            if xij != 0.0:
                nz[i, n_nz[i]] = j
                n_nz[i] += 1
                for m in range(d):  # row j of A^-1, contiguous
                    xa[i, m] += xij * a_inv[j, m]
    return xa, nz, n_nz


@_jit
def linucb_one(x, a_inv, b, alpha, bound):
    """LinUCB's bounds for one decision (numba): ``bound[i] = x_i theta + alpha sqrt(x_i
    A^-1 x_i)`` (the mean alone where the quadratic form is not positive), with ``x_i
    theta = (x_i A^-1) b``; ``x A^-1`` skips zero features."""
    k = x.shape[0]
    xa, nz, n_nz = _times_a_inv(x, a_inv)
    d = xa.shape[1]
    for i in range(k):
        mean = 0.0
        for m in range(d):
            mean += xa[i, m] * b[m]
        quad = 0.0
        for jj in range(n_nz[i]):
            m = nz[i, jj]
            quad += xa[i, m] * np.float64(x[i, m])
        bound[i] = mean + alpha * math.sqrt(quad) if quad > 0.0 else mean


@_jit
def lints_one(x, mask, a_inv, b, z, n_draws, epsilon, probs):
    """Linear Thompson sampling's win probabilities for one decision (numba).

    ``x`` (K, D) candidate features (K <= D), ``mask`` (K,) bool, ``a_inv`` (D, D) and ``b``
    (D,) the ridge model, ``z`` (half, K) the draws' normals ``N(0, v^2)`` with ``half =
    (n_draws + 1) // 2``, ``probs`` (K,) the output. Each row of ``z`` gives the antithetic
    score draws ``x theta +/- L z`` with ``L`` the Cholesky factor of ``x A^-1 x^T`` plus the
    jitter of :func:`policies.thompson.cholesky_small` (the last minus draw is dropped when
    ``n_draws`` is odd); every draw credits its best valid candidate (the first of equals),
    and ``probs`` gets ``(1 - epsilon) * wins / n_draws + epsilon / n_valid`` (0 where
    masked). ``x A^-1`` skips zero features. Returns False, ``probs`` untouched, if the
    covariance cannot be factored.
    """
    k = x.shape[0]
    xa, nz, n_nz = _times_a_inv(x, a_inv)
    d = xa.shape[1]
    xat = np.ascontiguousarray(xa.T)  # (D, K): the loops below run along K, contiguous
    mean = np.zeros(k)  # phi theta = (x A^-1) b
    for m in range(d):
        bm = b[m]
        for i in range(k):
            mean[i] += bm * xat[m, i]
    upper = np.zeros((k, k))  # x A^-1 x^T, upper triangle, row by row
    for r in range(k):
        for jj in range(n_nz[r]):
            m = nz[r, jj]
            xrm = np.float64(x[r, m])
            for i in range(r, k):
                upper[r, i] += xrm * xat[m, i]
    trace = 0.0
    for i in range(k):
        trace += upper[i, i]
    jitter = 1e-10 * trace / k + 2.2250738585072014e-308
    for i in range(k):
        upper[i, i] += jitter
    if not _cholesky_upper(upper):
        return False
    half = z.shape[0]
    zt = np.ascontiguousarray(z.T)  # (K, draws)
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
    for i in range(k):  # each draw's best valid candidate, the first of equals
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
    floor = epsilon / np.count_nonzero(mask)
    share = (1.0 - epsilon) / n_draws
    for i in range(k):
        probs[i] = counts[i] * share + floor if mask[i] else 0.0
    return True


@_jit
def lints_one_wide(x, mask, theta, root, z, n_draws, epsilon, probs):
    """Linear Thompson sampling's win probabilities for one decision with more candidates
    than features (K > D) (numba), as :func:`policies.thompson.win_probabilities_root` and
    :func:`policies.base.mix_uniform` compute them for one row: ``z`` (half, D) the normals
    ``N(0, v^2)``, each giving the weight draws ``theta + root z`` and ``theta - root z``
    (the last minus draw dropped when ``n_draws`` is odd); each draw credits every valid
    candidate with the best score (exact ties share it), the counts are normalized, and
    ``probs`` (K,) gets ``(1 - epsilon) * share + epsilon / n_valid`` (0 where masked).
    Returns False, ``probs`` untouched, if no score could be compared (NaN).

    Every sum runs in the order of its terms (so results are bit for bit the same as a
    draw-by-draw, candidate-by-candidate loop), with the loops nested so that the innermost
    one runs along the draws, over independent sums in contiguous memory, where the compiler
    can vectorize it."""
    k, d = x.shape
    half = z.shape[0]
    zt = np.empty((d, half))  # z transposed: the draws contiguous
    for s in range(half):
        for j in range(d):
            zt[j, s] = z[s, j]
    w = np.zeros((d, half))  # root z for every draw, then theta + root z
    for j in range(d):
        for m in range(d):
            r = root[m, j]
            for s in range(half):
                w[m, s] += r * zt[j, s]
    for m in range(d):
        t = theta[m]
        for s in range(half):
            w[m, s] = t + w[m, s]
    base = np.zeros(k)  # x theta
    up = np.zeros((k, half))  # x (theta + root z), every draw
    for i in range(k):
        for m in range(d):
            xim = np.float64(x[i, m])
            base[i] += xim * theta[m]
            for s in range(half):
                up[i, s] += xim * w[m, s]
    top_up = np.full(half, -np.inf)
    top_down = np.full(half, -np.inf)
    for i in range(k):
        if mask[i]:
            twice = 2.0 * base[i]  # x (2 theta - w): the antithetic draw
            for s in range(half):
                u = up[i, s]
                if u > top_up[s]:
                    top_up[s] = u
                if twice - u > top_down[s]:
                    top_down[s] = twice - u
    counts = np.zeros(k)
    for i in range(k):
        if mask[i]:
            twice = 2.0 * base[i]
            c = 0.0
            for s in range(half):
                u = up[i, s]
                if u == top_up[s]:
                    c += 1.0
                if half + s < n_draws and twice - u == top_down[s]:
                    c += 1.0
            counts[i] = c
    total = counts.sum()
    if not total > 0.0:  # no score compared (NaN)
        return False
    floor = epsilon / np.count_nonzero(mask)
    for i in range(k):
        probs[i] = (1.0 - epsilon) * (counts[i] / total) + floor if mask[i] else 0.0
    return True


@_jit
def funk_sgd(users, items, user_rows, item_rows, targets, lr_user, lr_item, l2, clip):
    """SGD on the squared loss of a stream of (user, item, y) events, in place (numba):
    event ``t`` pairs row ``user_rows[t]`` of ``users`` with row ``item_rows[t]`` of
    ``items``; ``g = clip(2 (u . v - y))``, then from the old values ``u -= lr_user (g v +
    l2 u)`` and ``v -= lr_item (g u + l2 v)``: River's FunkMF update, operation for
    operation (the dot product is numpy's, through BLAS, as ``np.dot`` computes it)."""
    old_u = np.empty(users.shape[1])
    for t in range(targets.shape[0]):
        _funk_step(users[user_rows[t]], items[item_rows[t]], targets[t], lr_user, lr_item, l2,
                   clip, old_u)


@_jit
def funk_sgd_one(users, items, user_row, item_row, target, lr_user, lr_item, l2, clip):
    """:func:`funk_sgd` of one event (no index arrays to build)."""
    _funk_step(users[user_row], items[item_row], target, lr_user, lr_item, l2, clip,
               np.empty(users.shape[1]))


@_jit
def _funk_step(u, v, y, lr_user, lr_item, l2, clip, old_u):
    g = 2.0 * (np.dot(u, v) - y)
    g = max(min(g, clip), -clip)
    f = u.shape[0]
    for m in range(f):
        old_u[m] = u[m]
    for m in range(f):
        u[m] = old_u[m] - lr_user * (g * v[m] + l2 * old_u[m])
    for m in range(f):
        v[m] = v[m] - lr_item * (g * old_u[m] + l2 * v[m])


@_jit
def row_dots(matrix, rows, vector, out, col):
    """``out[k, col] = matrix[rows[k]] . vector`` for every ``k`` (numba), summed in order:
    the latent scores of a request's candidates, without gathering their rows first.
    ``rows`` must index ``matrix`` (no bounds are checked)."""
    f = vector.shape[0]
    for k in range(rows.shape[0]):
        r = matrix[rows[k]]
        s = 0.0
        for m in range(f):
            s += r[m] * vector[m]
        out[k, col] = s


@_jit
def topic_columns(affinity, exposure, decay, mass, exposure_decay, out):
    """A shard's topic columns for candidates of one topic each (numba): ``out[:, 0] =
    affinity * decay / mass`` and, when ``exposure`` is not empty, ``out[:, 4] =
    log1p(exposure * exposure_decay)``, element by element as Python's floats compute them."""
    for k in range(affinity.shape[0]):
        out[k, 0] = affinity[k] * decay / mass
    if exposure.shape[0]:
        for k in range(exposure.shape[0]):
            out[k, 4] = math.log1p(exposure[k] * exposure_decay)


@_jit_typed(lambda t: t.void(t.Array(t.float64, 2, "A"), _read_only(t, 1), _read_only(t, 2),
                             _read_only(t, 2), _read_only(t, 1)))
def fill_features(row, user, inter, item, ctx):
    """One request's candidate features ``row`` (K, D), every column (numba): a constant 1,
    the interactions (K, I), the user's features (U,), the item features (K, d_i), then,
    with a context (d_c,), each item feature times each context value and the first
    interaction times each context value: :meth:`engine.featurizer.Featurizer.build`'s
    layout, the same products. All float64."""
    n_i, n_u, d_i, d_c = inter.shape[1], user.shape[0], item.shape[1], ctx.shape[0]
    for r in range(row.shape[0]):
        row[r, 0] = 1.0
        col = 1
        for j in range(n_i):
            row[r, col + j] = inter[r, j]
        col += n_i
        for j in range(n_u):
            row[r, col + j] = user[j]
        col += n_u
        for j in range(d_i):
            row[r, col + j] = item[r, j]
        col += d_i
        if d_c:
            for a in range(d_i):
                for c in range(d_c):
                    row[r, col + a * d_c + c] = item[r, a] * ctx[c]
            col += d_i * d_c
            for c in range(d_c):
                row[r, col + c] = inter[r, 0] * ctx[c]


@_jit
def max_abs(values):
    """The largest magnitude in a 2-D float array (numba; 0 when empty), or NaN if it holds
    one: one pass where ``max()`` and ``min()`` take two numpy reductions."""
    top = 0.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            a = abs(values[i, j])
            if a > top:
                top = a
            elif a != a:  # NaN
                return a
    return top


#: The largest share of a pivot's square one record may take off in :func:`ridge_step`'s
#: downdate of a Cholesky factor (a new factorization is asked for beyond it). A record in
#: a direction the model has seen little (the first records, features of large scale) takes
#: nearly all; later ones take little.
DOWNDATE_SHRINK = 0.9


@_jit
def ridge_step(a_inv, b, x, reward, lam, refresh, j, lower):
    """One record ``x`` (D,) with ``reward`` into a ridge model with forgetting, in place
    (numba), in O(D^2): with ``P = A^-1``,

    ``A <- lam A + x x^T + refresh e_j e_j^T``,  ``b <- lam b + reward x``,

    ``P`` by Sherman-Morrison twice in one pass: ``P1 = (P - P x x^T P / (lam + x P x)) /
    lam``, then ``P1 - w w^T`` with ``w = sqrt(refresh) P1 e_j / sqrt(1 + refresh P1_jj)``
    (``lam`` = 1 and ``refresh`` = 0: the plain ridge step, the same floating-point
    operations as ever). ``lower``, a lower Cholesky factor of ``P`` (D, D), or an empty
    (0, 0) array for none, is downdated along with it by hyperbolic rotations, column by
    column for both vectors, and scaled by ``1 / sqrt(lam)``: the factor a new factorization
    would give, up to rounding. ``A^-1 x`` skips zero features.

    Returns ``(x theta, x P x, factor_ok)`` with ``theta`` and ``P`` as they were before the
    record (its prediction and its leverage, free here); ``factor_ok`` is False (``lower``
    undefined; the model is updated) where ``lower`` is not lower triangular or where a
    rotation would take more than :data:`DOWNDATE_SHRINK` of a pivot's square: there it
    cancels digits, and the factor's jitter, absolute, would outgrow the shrunken matrix; a
    new factorization is then as accurate as ``P`` itself. False too where there is none.
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
    if lam == 1.0 and refresh == 0.0:
        for i in range(d):
            ci = scale * ax[i]
            for m in range(d):
                a_inv[i, m] += ci * ax[m]
        for m in range(d):
            b[m] += reward * x[m]
    else:
        inv_lam = 1.0 / lam
        for i in range(d):
            ci = scale * ax[i]
            wi = w[i]
            for m in range(d):
                a_inv[i, m] = (a_inv[i, m] + ci * ax[m]) * inv_lam - wi * w[m]
        for m in range(d):
            b[m] = lam * b[m] + reward * x[m]
    ok = lower.shape[0] == d and d > 0
    if ok:
        norm = math.sqrt(lam + quad)
        for m in range(d):
            ax[m] /= norm
        ok = _downdate(lower, ax, 1.0 / math.sqrt(lam), w, refresh > 0.0)
    return pred, quad, ok


@_jit
def _downdate(lower, v, shrink, w, with_w):
    """In place: ``lower`` (D, D) becomes a lower Cholesky factor of ``(L L^T - v v^T) *
    shrink^2 - w w^T`` (the last term only ``with_w``), one column at a time: the first
    rotation finishes a column of the first factor, which is scaled, then the second
    rotation takes ``w`` off it. ``v`` and ``w`` are overwritten. False where ``lower`` is
    not lower triangular or a pivot would lose more than :data:`DOWNDATE_SHRINK` of its
    square (also NaN)."""
    d = lower.shape[0]
    for i in range(d):
        for jj in range(i + 1, d):
            if lower[i, jj] != 0.0:
                return False
    for k in range(d):
        if not _rotate(lower, v, k):
            return False
        if shrink != 1.0:
            for i in range(k, d):
                lower[i, k] *= shrink
        if with_w and not _rotate(lower, w, k):
            return False
    return True


@_jit
def _rotate(lower, v, k):
    """Column ``k`` of a hyperbolic-rotation downdate of ``lower`` by ``v`` (in place)."""
    lkk = lower[k, k]
    r2 = lkk * lkk - v[k] * v[k]
    if not (lkk > 0.0 and r2 >= (1.0 - DOWNDATE_SHRINK) * lkk * lkk):  # (also NaN)
        return False
    r = math.sqrt(r2)
    c = r / lkk
    s = v[k] / lkk
    lower[k, k] = r
    for i in range(k + 1, lower.shape[0]):
        lik = (lower[i, k] - s * v[i]) / c
        lower[i, k] = lik
        v[i] = c * v[i] - s * lik
    return True
