"""Differentially private figures: OpenDP measurements over per-user bounded data.

Every figure is released by an OpenDP measurement (``make_count_by_categories`` or
``make_clamp >> make_sum``, then ``then_laplace``); nothing here draws noise itself. The unit
of privacy is one user: the caller keeps at most ``d_in`` rows per user (the contribution
bound), so adding or removing a user changes the data by at most ``d_in`` rows (symmetric
distance) and the measurement's privacy map gives the loss at ``d_in``.

Each figure comes as a :class:`Figure`: the noisy value, the Laplace scale of its noise, the
epsilon it cost and a ``1 - alpha`` interval that holds the exact figure of the bounded data
(the data after clipping and contribution limits) with at least that probability.

Sums by key (per variant, per topic) are one measurement per key over disjoint rows: a user
with ``d_v`` rows in key ``v`` and ``sum(d_v) <= d_in`` costs ``sum(eps * d_v / d_in) <= eps``
because the Laplace map is linear in ``d_in`` (parallel composition), so the whole group
costs the ``epsilon`` of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import opendp.prelude as dp

from engine.checks import is_number
from engine.errors import ValidationError

dp.enable_features("contrib")


@dataclass(frozen=True)
class Figure:
    """One released figure: ``value`` with Laplace noise of ``scale``, costing ``epsilon``;
    ``ci`` holds the exact (bounded) figure with probability at least ``1 - alpha``.

    Examples
    --------
    >>> f = Figure(12.0, 2.0, (6.0, 18.0), 0.5)
    >>> f.as_dict()
    {'value': 12.0, 'scale': 2.0, 'ci': [6.0, 18.0], 'epsilon': 0.5}
    """

    value: float
    scale: float
    ci: tuple[float, float]
    epsilon: float

    def as_dict(self) -> dict:
        return {**asdict(self), "ci": list(self.ci)}


def check_epsilon(epsilon: object, field: str = "epsilon") -> float:
    """``epsilon`` as a float, or a :class:`ValidationError` naming ``field``."""
    if not is_number(epsilon) or epsilon <= 0:
        raise ValidationError(field, "must be a finite number > 0", epsilon)
    return float(epsilon)


def check_alpha(alpha: object) -> float:
    if not is_number(alpha) or not 0 < alpha < 1:
        raise ValidationError("alpha", "must be a number strictly between 0 and 1", alpha)
    return float(alpha)


def _calibrated(transform, d_in: int, epsilon: float):
    """``transform`` with Laplace noise, the scale found by OpenDP's binary search so that
    the loss at ``d_in`` is ``epsilon``: (measurement, scale, loss)."""
    scale = dp.binary_search_param(lambda s: transform >> dp.m.then_laplace(s), d_in=d_in,
                                   d_out=epsilon)
    meas = transform >> dp.m.then_laplace(scale)
    return meas, float(scale), float(meas.map(d_in))


@lru_cache(maxsize=256)
def _count_measurement(keys: tuple[str, ...], d_in: int, epsilon: float):
    """Counts of ``keys`` (plus one for any other key) with discrete Laplace noise."""
    space = dp.vector_domain(dp.atom_domain(T=str)), dp.symmetric_distance()
    return _calibrated(dp.t.make_count_by_categories(
        *space, categories=list(keys), null_category=True, MO=dp.L1Distance[int]), d_in, epsilon)


@lru_cache(maxsize=256)
def _sum_measurement(bounds: tuple[float, float], d_in: int, epsilon: float):
    """The sum of values clamped to ``bounds`` with Laplace noise."""
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()
    return _calibrated(dp.t.make_clamp(*space, bounds=bounds) >> dp.t.then_sum(), d_in, epsilon)


def noisy_counts(rows: Iterable[str], keys: Sequence[str], d_in: int, epsilon: float,
                 alpha: float = 0.05) -> dict[str, Figure]:
    """How many ``rows`` hold each key (each user gives at most ``d_in`` rows), as
    figures; rows of other keys go to ``"(other)"``. Costs ``epsilon`` in all.

    Examples
    --------
    >>> figs = noisy_counts(["a"] * 50 + ["b"] * 20, ["a", "b"], d_in=1, epsilon=1.0)
    >>> sorted(figs), figs["a"].scale
    (['(other)', 'a', 'b'], 1.0)
    >>> figs["a"].ci[0] <= figs["a"].value <= figs["a"].ci[1]
    True
    """
    keys = tuple(keys)
    meas, scale, spent = _count_measurement(keys, int(d_in), float(epsilon))
    values = meas(list(rows))
    half = float(dp.discrete_laplacian_scale_to_accuracy(scale, alpha))
    names = [*keys, "(other)"]
    return {k: Figure(float(v), scale, (float(v) - half, float(v) + half), spent)
            for k, v in zip(names, values, strict=True)}


def noisy_sums(rows: Iterable[tuple[str, float]], keys: Sequence[str],
               bounds: tuple[float, float], d_in: int, epsilon: float,
               alpha: float = 0.05) -> dict[str, Figure]:
    """The sum of each key's values, each clamped to ``bounds`` (each user gives at most
    ``d_in`` rows in all keys together), as figures. Costs ``epsilon`` in all (parallel
    composition over the keys' disjoint rows; see the module's docstring).

    Examples
    --------
    >>> figs = noisy_sums([("a", 0.5)] * 40, ["a", "b"], (0.0, 1.0), d_in=1, epsilon=1.0)
    >>> round(figs["b"].scale, 3), figs["a"].ci[0] <= figs["a"].value <= figs["a"].ci[1]
    (1.0, True)
    """
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise ValidationError("bounds", "must be (low, high) with low < high", bounds)
    meas, scale, spent = _sum_measurement((lo, hi), int(d_in), float(epsilon))
    by_key: dict[str, list[float]] = {k: [] for k in keys}
    for key, value in rows:
        if key in by_key:
            by_key[key].append(float(value))
    half = float(dp.laplacian_scale_to_accuracy(scale, alpha))
    sums = {key: float(meas(values)) for key, values in by_key.items()}
    return {key: Figure(v, scale, (v - half, v + half), spent) for key, v in sums.items()}


def mean_of(total: Figure, count: Figure, bounds: tuple[float, float],
            alpha: float = 0.05) -> Figure:
    """The mean ``total / count`` (post-processing: no further cost), kept within ``bounds``.

    Its interval takes every ratio that the sum's and the count's ``1 - alpha/2`` intervals
    (from their scales) allow, so it holds the exact mean with probability at least
    ``1 - alpha`` (union bound). Where the count's interval reaches zero it is ``bounds``.

    Examples
    --------
    >>> m = mean_of(Figure(30.0, 1.0, (27.0, 33.0), 0.5), Figure(60.0, 1.0, (57.0, 63.0), 0.5),
    ...             (0.0, 1.0))
    >>> m.value, [round(x, 4) for x in m.ci]
    (0.5, [0.4107, 0.6023])
    """
    lo, hi = bounds
    value = min(hi, max(lo, total.value / max(count.value, 1.0)))
    s_half = float(dp.laplacian_scale_to_accuracy(total.scale, alpha / 2))
    c_half = float(dp.discrete_laplacian_scale_to_accuracy(count.scale, alpha / 2))
    c_lo, c_hi = count.value - c_half, count.value + c_half
    if c_lo <= 0:
        ci = (float(lo), float(hi))
    else:
        ratios = [s / c for s in (total.value - s_half, total.value + s_half)
                  for c in (c_lo, c_hi)]
        ci = (max(lo, min(ratios)), min(hi, max(ratios)))
    return Figure(float(value), total.scale, (float(ci[0]), float(ci[1])),
                  total.epsilon + count.epsilon)
