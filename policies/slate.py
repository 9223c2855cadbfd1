"""Slates: fill L slots from a policy's probabilities, with per-slot propensities."""

from __future__ import annotations

import numpy as np

from policies.base import as_float_array


def sample_slate(probs: np.ndarray, slate_size: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``slate_size`` (L, at most the non-zero candidates of any row) distinct
    candidates per row of ``probs`` (B, K) with the caller's ``rng``, in slot order.

    Slot 0 is drawn from ``probs``; each later slot from the remaining candidates with their
    probabilities renormalized (zeros are never drawn). ``slot_probs[b, j]`` is the probability of
    ``slots[b, j]`` given the earlier slots, so the probability of the whole slate is their product.

    Examples
    --------
    >>> import numpy as np
    >>> slots, p = sample_slate(np.array([[0.5, 0.25, 0.25, 0.0]]), 3, np.random.default_rng(0))
    >>> sorted(slots[0].tolist()), float(p[0, 2])   # the last slot takes the one left
    ([0, 1, 2], 1.0)
    """
    probs = as_float_array(probs, "probs")
    if probs.ndim != 2:
        raise ValueError(f"probs: must have shape (B, K) (got {probs.shape})")
    if not (np.isfinite(probs).all() and (probs >= 0).all()):
        raise ValueError("probs: must be finite and >= 0")
    if isinstance(slate_size, bool) or not isinstance(slate_size, (int, np.integer)) \
            or slate_size < 1:
        raise ValueError(f"slate_size: must be an integer >= 1 (got {slate_size!r})")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: must be a numpy Generator, e.g. np.random.default_rng(seed) "
                        f"(got {type(rng).__name__})")
    nonzero = (probs > 0).sum(axis=1)
    if (nonzero < slate_size).any():
        row = int(np.argmin(nonzero))
        raise ValueError(f"slate_size: {slate_size} exceeds the {int(nonzero[row])} candidates "
                         f"with non-zero probability in row {row}")
    b, _ = probs.shape
    remaining = probs.copy()
    slots = np.zeros((b, slate_size), dtype=np.int64)
    slot_probs = np.zeros((b, slate_size))
    rows = np.arange(b)
    for j in range(slate_size):
        cond = remaining / remaining.sum(axis=1, keepdims=True)
        cum = np.cumsum(cond, axis=1)
        u = rng.random(b) * cum[:, -1]
        pick = np.minimum((cum <= u[:, None]).sum(axis=1), probs.shape[1] - 1)
        bad = cond[rows, pick] <= 0  # float edge: fall back to the most likely left
        pick[bad] = cond[bad].argmax(axis=1)
        slots[:, j] = pick
        slot_probs[:, j] = cond[rows, pick]
        remaining[rows, pick] = 0.0
    return slots, slot_probs
