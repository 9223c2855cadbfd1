"""Percentile bootstrap over logged rounds, and the effective sample size.

Every estimator reduces to per-round terms (see :func:`combine`), so one resampling of the
rounds serves them all: the same bootstrap indices are applied to every estimator's terms
(common random numbers, so intervals of different estimators are comparable), and nothing
is refit inside the bootstrap (the reward model's predictions are held fixed; with
cross-fitting they are out-of-fold for every round).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.checks import check_int, check_probability

Terms = tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None"]

#: Bootstrap indices are drawn in chunks of about this many entries to bound memory.
CHUNK_ENTRIES = 1 << 22


def combine(num: np.ndarray, den: np.ndarray | None = None, add: np.ndarray | None = None,
            axis: int = -1) -> float | np.ndarray:
    """An estimate from per-round terms along ``axis``: ``mean(num)``, or
    ``sum(num) / sum(den)`` for ratio estimators (NaN where ``sum(den) == 0``), plus
    ``mean(add)`` when given.

    Examples
    --------
    >>> import numpy as np
    >>> float(combine(np.array([1.0, 3.0]))), float(combine(np.array([1.0, 3.0]), np.array([1.0, 1.0])))
    (2.0, 2.0)
    """
    if den is None:
        value = num.mean(axis=axis)
    else:
        total = den.sum(axis=axis)
        safe = np.where(total > 0, total, 1.0)
        value = np.where(total > 0, num.sum(axis=axis) / safe, np.nan)
    if add is not None:
        value = value + add.mean(axis=axis)
    return value


def check_bootstrap_args(n_bootstrap: int, alpha: float) -> None:
    """Raise :class:`engine.errors.ValidationError` naming ``n_bootstrap`` (an integer >= 1)
    or ``alpha`` (in (0, 1)) when invalid."""
    check_int("n_bootstrap", n_bootstrap, 1)
    check_probability("alpha", alpha)


def bootstrap_samples(term_sets: Sequence[Terms], n_bootstrap: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of several estimators on the same resamples.

    Parameters
    ----------
    term_sets
        One ``(num, den, add)`` triple of (n,) arrays (``den``/``add`` may be None) per
        estimator, all over the same n rounds.
    n_bootstrap
        Number of resamples (rounds drawn with replacement, n per resample).
    rng
        The generator that draws the resamples.

    Returns
    -------
    numpy.ndarray
        Shape (len(term_sets), n_bootstrap): replicate estimates (NaN where a ratio
        estimator's denominator is 0 in a resample).
    """
    n = len(term_sets[0][0])
    out = np.empty((len(term_sets), n_bootstrap))
    per = max(1, CHUNK_ENTRIES // n)
    for start in range(0, n_bootstrap, per):
        stop = min(n_bootstrap, start + per)
        idx = rng.integers(n, size=(stop - start, n))
        for j, terms in enumerate(term_sets):
            out[j, start:stop] = combine(*(None if t is None else t[idx] for t in terms), axis=1)
    return out


def percentile_interval(samples: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """The ``alpha/2`` and ``1 - alpha/2`` quantiles of the finite replicates (NaN, NaN if
    none is finite)."""
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return float("nan"), float("nan")
    lo, hi = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (0 when every weight is 0).

    Examples
    --------
    >>> import numpy as np
    >>> effective_sample_size(np.ones(10)), effective_sample_size(np.r_[np.zeros(9), 5.0])
    (10.0, 1.0)
    """
    weights = np.asarray(weights, dtype=float)
    sq = float((weights ** 2).sum())
    return float(weights.sum() ** 2 / sq) if sq > 0 else 0.0
