"""Mergeable per-variant accumulator of an outcome's count, mean and variance."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from engine.checks import check_int, check_real
from engine.errors import ValidationError, ValidationTypeError


class VariantStats:
    """Running count, mean and variance of one variant's outcomes (Welford / Chan et al.).

    Batches are folded in with the parallel update of Chan, Golub and LeVeque, so
    ``a.merge(b)`` gives the same state (to rounding) as one pass over both data sets. The
    state is three numbers: it pickles cheaply and survives a restart via :meth:`to_dict`.

    Examples
    --------
    >>> a = VariantStats().update([1.0, 0.0, 1.0])
    >>> b = VariantStats().update([0.0, 1.0])
    >>> merged = VariantStats().merge(a).merge(b)
    >>> merged.n, merged.mean, round(merged.var, 6)
    (5, 0.6, 0.3)
    >>> VariantStats.from_dict(merged.to_dict()) == merged
    True
    """

    __slots__ = ("_n", "_mean", "_m2")

    def __init__(self) -> None:
        self._n, self._mean, self._m2 = 0, 0.0, 0.0

    @property
    def n(self) -> int:
        """Number of outcomes seen."""
        return self._n

    @property
    def mean(self) -> float:
        """Their mean (``nan`` while ``n == 0``)."""
        return self._mean if self._n > 0 else math.nan

    @property
    def var(self) -> float:
        """Their sample variance with ``ddof=1`` (``nan`` while ``n < 2``)."""
        return self._m2 / (self._n - 1) if self._n > 1 else math.nan

    def _combine(self, n: int, mean: float, m2: float) -> None:
        if n == 0:
            return
        total = self._n + n
        delta = mean - self._mean
        self._mean += delta * n / total
        self._m2 += m2 + delta * delta * self._n * n / total
        self._n = total

    def update(self, values: float | Iterable[float] | np.ndarray) -> VariantStats:
        """Fold in one finite outcome or a one-dimensional batch of them; returns ``self``.
        A non-numeric ``values`` raises :class:`~engine.errors.ValidationTypeError`, a nan,
        infinite or higher-dimensional one :class:`~engine.errors.ValidationError`."""
        if isinstance(values, (bool, np.bool_)):
            raise ValidationTypeError("values", "must be numeric, not a bool", values)
        try:
            arr = np.atleast_1d(np.asarray(values, dtype=float))
        except (TypeError, ValueError):
            raise ValidationTypeError("values", "must be a number or a sequence of numbers",
                                      values) from None
        if arr.ndim != 1:
            raise ValidationError("values", "must be a scalar or one-dimensional",
                                  f"shape {arr.shape}")
        if arr.size == 0:
            return self
        if not np.all(np.isfinite(arr)):
            raise ValidationError("values", "must all be finite", values)
        mean = float(arr.mean())
        self._combine(int(arr.size), mean, float(np.sum((arr - mean) ** 2)))
        return self

    def merge(self, other: VariantStats) -> VariantStats:
        """Fold another accumulator's state into this one; returns ``self``."""
        if not isinstance(other, VariantStats):
            raise ValidationTypeError("other", "must be a VariantStats", other)
        self._combine(other._n, other._mean, other._m2)
        return self

    def copy(self) -> VariantStats:
        """An independent copy."""
        return VariantStats.from_dict(self.to_dict())

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready state: ``{"n": ..., "mean": ..., "m2": ...}``."""
        return {"n": self._n, "mean": self._mean, "m2": self._m2}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> VariantStats:
        """Rebuild an accumulator from :meth:`to_dict` output, checking every field."""
        if not isinstance(state, Mapping):
            raise ValidationTypeError("state", "must be a mapping with keys n, mean, m2", state)
        missing = {"n", "mean", "m2"} - set(state)
        if missing:
            raise ValidationError("state", f"is missing keys {sorted(missing)}", state)
        n = check_int("state['n']", state["n"], 0)
        mean = check_real("state['mean']", state["mean"])
        m2 = check_real("state['m2']", state["m2"])
        if not (math.isfinite(mean) and math.isfinite(m2)) or m2 < 0.0:
            raise ValidationError("state", "mean must be finite and m2 finite and >= 0", state)
        out = cls()
        out._n, out._mean, out._m2 = n, mean, m2
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VariantStats):
            return NotImplemented
        return (self._n, self._mean, self._m2) == (other._n, other._mean, other._m2)

    def __repr__(self) -> str:
        return f"VariantStats(n={self._n}, mean={self.mean:.6g}, var={self.var:.6g})"
