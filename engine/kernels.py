"""The engine's compiled kernels (numba): latent-factor SGD, latent scores, topic columns,
candidate features and bounds checks, each one call where a loop of numpy calls would cost more.

Kernels are cached on disk (``cache=True``); :func:`warm_up` compiles or loads them all when a
:class:`~engine.shard.ProfileShard` is built, so no ingest or rank pays for it. Their numpy
statements, used to check them, live in ``tests/oracles.py``.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

_jit = numba.njit(cache=True)  # holds the GIL: calls of microseconds, from one thread


def _jit_typed(signature):
    """:func:`_jit` with one signature, ``signature(numba.types)``, for every array layout;
    compiled at the first call, not at import, then put in place of the module's name."""
    def decorate(fn):
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
    """A float64 array argument, read-only or not (as from Ray), contiguous or not: one type
    for all, so that no compilation waits for a request."""
    return t.Array(t.float64, ndim, "A", readonly=True)


@functools.cache
def warm_up() -> None:
    """Compile (or load from the disk cache) every kernel, once per process."""
    k, d = 2, 3
    funk_sgd(np.ones((1, d)), np.ones((1, d)), np.zeros(1, np.int64), np.zeros(1, np.int64),
             np.ones(1), 0.1, 0.1, 0.0, 1.0)
    funk_sgd_one(np.ones((1, d)), np.ones((1, d)), 0, 0, 1.0, 0.1, 0.1, 0.0, 1.0)
    row_dots(np.ones((1, d)), np.zeros(k, np.int64), np.ones(d), np.empty((k, 2)), 1)
    starts = np.arange(k + 1)
    topic_columns(np.ones(k), np.ones(k), starts, 0.5, 2.0, 0.5, np.empty((k, 5)))
    topic_columns(np.ones(k), np.empty(0), starts, 0.5, 2.0, 0.5, np.empty((k, 5)))
    max_abs(np.ones((k, d)))
    fill_features(np.empty((k, 1 + 2 + 2 + d + d * d + d)), np.ones(2), np.ones((k, 2)),
                  np.ones((k, d)), np.ones(d))


@_jit
def funk_sgd(users, items, user_rows, item_rows, targets, lr_user, lr_item, l2, clip):
    """SGD on the squared loss of a stream of (user, item, y) events, in place: event ``t``
    pairs row ``user_rows[t]`` of ``users`` with row ``item_rows[t]`` of ``items``; ``g =
    clip(2 (u . v - y))``, then from the old values ``u -= lr_user (g v + l2 u)`` and ``v
    -= lr_item (g u + l2 v)``: River's FunkMF update, operation for operation."""
    for t in range(targets.shape[0]):
        _funk_step(users[user_rows[t]], items[item_rows[t]], targets[t], lr_user, lr_item, l2,
                   clip)


@_jit
def funk_sgd_one(users, items, user_row, item_row, target, lr_user, lr_item, l2, clip):
    """:func:`funk_sgd` of one event (no index arrays to build)."""
    _funk_step(users[user_row], items[item_row], target, lr_user, lr_item, l2, clip)


@_jit
def _funk_step(u, v, y, lr_user, lr_item, l2, clip):
    g = 2.0 * (np.dot(u, v) - y)
    g = max(min(g, clip), -clip)
    for m in range(u.shape[0]):
        old_u = u[m]
        u[m] = old_u - lr_user * (g * v[m] + l2 * old_u)
        v[m] = v[m] - lr_item * (g * old_u + l2 * v[m])


@_jit
def row_dots(matrix, rows, vector, out, col):
    """``out[k, col] = matrix[rows[k]] . vector`` for every ``k``, summed in order (the
    candidates' latent scores); ``rows`` must index ``matrix`` (no bounds are checked)."""
    f = vector.shape[0]
    for k in range(rows.shape[0]):
        r = matrix[rows[k]]
        s = 0.0
        for m in range(f):
            s += r[m] * vector[m]
        out[k, col] = s


@_jit
def topic_columns(affinity, exposure, starts, decay, mass, exposure_decay, out):
    """A shard's topic columns: candidate ``k``'s topics are entries ``starts[k]`` to
    ``starts[k + 1]`` of ``affinity`` and (when not empty) ``exposure``; ``out[k, 0]`` gets
    the sum of its affinities ``* decay / mass`` and ``out[k, 4]`` ``log1p(sum of its
    exposures * exposure_decay)`` (0 for a sum of 0), each sum in order from 0.0."""
    for k in range(starts.shape[0] - 1):
        a = 0.0
        for j in range(starts[k], starts[k + 1]):
            a += affinity[j]
        out[k, 0] = a * decay / mass
    if exposure.shape[0]:
        for k in range(starts.shape[0] - 1):
            e = 0.0
            for j in range(starts[k], starts[k + 1]):
                e += exposure[j]
            out[k, 4] = math.log1p(e * exposure_decay) if e != 0.0 else 0.0


@_jit_typed(lambda t: t.void(t.Array(t.float64, 2, "A"), _read_only(t, 1), _read_only(t, 2),
                             _read_only(t, 2), _read_only(t, 1)))
def fill_features(row, user, inter, item, ctx):
    """One request's candidate features ``row`` (K, D), every column: a constant 1, the
    interactions (K, I), the user's features (U,), the item features (K, d_i), then, with a
    context (d_c,), each item feature times each context value and the first interaction
    times each context value (:class:`engine.featurizer.Featurizer`'s layout). All float64."""
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
    """The largest magnitude in a 2-D float array (0 when empty), or NaN if it holds one."""
    top = 0.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            a = abs(values[i, j])
            if a > top:
                top = a
            elif a != a:  # NaN
                return a
    return top
