"""Plain numpy and Python statements of the engine's compiled kernels (``engine/kernels.py``):
what each kernel must compute, for the tests to check it against."""

from __future__ import annotations

from math import log1p

import numpy as np


def fill_features(row, user, inter, item, ctx) -> None:
    """:func:`engine.kernels.fill_features`: one request's rows (K, D) in the featurizer's
    layout, ``[1 | inter | user | item | item x ctx | inter[:, 0] x ctx]``."""
    k, n_i, n_u = len(inter), inter.shape[1], len(user)
    d_i, d_c = item.shape[1], len(ctx)
    row[:, 0] = 1.0
    row[:, 1:1 + n_i] = inter
    row[:, 1 + n_i:1 + n_i + n_u] = user
    col = 1 + n_i + n_u
    row[:, col:col + d_i] = item
    col += d_i
    if d_c:
        row[:, col:col + d_i * d_c] = (item[:, :, None] * ctx[None, None, :]).reshape(k, -1)
        col += d_i * d_c
        row[:, col:col + d_c] = inter[:, :1] * ctx[None, :]


def max_abs(values) -> float:
    """:func:`engine.kernels.max_abs`: the largest magnitude (0 when empty; NaN if any)."""
    if values.size == 0:
        return 0.0
    if np.isnan(values).any():
        return float("nan")
    return float(np.abs(values).max())


def topic_columns(inter, candidates, interests, exposure, decay, mass, expo_decay) -> None:
    """:func:`engine.kernels.topic_columns` as a shard applies it: the topic affinity
    (column 0) and exposure (column 4) of candidates with any number of topics each."""
    for k, cand in enumerate(candidates):
        a = e = 0.0
        for t in cand.topic_keys:
            a += interests.get(t, 0.0)
            e += exposure.get(t, 0.0)
        inter[k, 0] = a * decay / mass
        if exposure:
            inter[k, 4] = log1p(e * expo_decay) if e else 0.0


def item_vectors(model, items) -> np.ndarray:
    """A :class:`engine.latent.LatentFactors` model's item vectors (zeros for an item never
    learned), read from its dict without drawing any."""
    zero = np.zeros(model.n_factors)
    return np.array([model.i_latents.get(i, zero) for i in items], dtype=float)
