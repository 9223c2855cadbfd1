"""Online A/B statistics: sticky assignment, per-variant accumulators and the report.

The engine assigns users with :func:`assign_variant`, accumulates each variant's outcomes
in a :class:`VariantStats` and asks :func:`ab_report` for the comparison: fixed-horizon
tests in :mod:`.fixed`, the always-valid sequential test in :mod:`.sequential`, the
sample-ratio check in :mod:`.srm`. Offline peeking simulations live in
:mod:`experiments.abstats`.

Examples
--------
>>> split = {"control": 1, "treatment": 1}
>>> stats = {name: VariantStats() for name in split}
>>> for i in range(400):
...     v = assign_variant(f"user-{i}", split, salt="exp-1")
...     _ = stats[v].update(float(i % 3 == 0))
>>> report = ab_report(stats, split, control="control")
>>> sorted(report)
['alpha', 'comparisons', 'control', 'srm', 'variants', 'warnings']
"""

from __future__ import annotations

from .accumulator import VariantStats
from .assignment import assign_variant, hash_unit, validate_weights
from .fixed import WelchResult, lift_ci, mean_ci, welch_test
from .report import ab_report, format_report
from .sequential import (
    DEFAULT_MIN_N,
    DEFAULT_TARGET_N,
    SequentialResult,
    cs_radius,
    mixture_tau2,
    msprt,
)
from .srm import DEFAULT_SRM_THRESHOLD, srm_check

__all__ = [
    "DEFAULT_MIN_N", "DEFAULT_SRM_THRESHOLD", "DEFAULT_TARGET_N", "SequentialResult",
    "VariantStats", "WelchResult", "ab_report", "assign_variant", "cs_radius", "format_report",
    "hash_unit", "lift_ci", "mean_ci", "mixture_tau2", "msprt", "srm_check", "validate_weights",
    "welch_test",
]
