"""Offline checks of the A/B statistics: vectorized peeking simulations.

The statistics themselves (assignment, accumulator, fixed-horizon and sequential tests, SRM,
report) are the engine's, in :mod:`engine.abtest`; they are re-exported here so that
``from experiments.abstats import VariantStats, ab_report`` keeps working.

Modules
-------
simulation
    Vectorized peeking simulations (A/A false-positive rate, A/B power and coverage).

Examples
--------
>>> r = simulate_peeking(0.1, 0.1, n_reps=20, n_batches=3, seed=0)
>>> 0.0 <= r.sequential_reject_rate <= 1.0
True
"""

from __future__ import annotations

from engine.abtest import (
    SequentialResult,
    VariantStats,
    WelchResult,
    ab_report,
    assign_variant,
    format_report,
    hash_unit,
    lift_ci,
    mean_ci,
    mixture_tau2,
    msprt,
    srm_check,
    validate_weights,
    welch_test,
)

from .simulation import PeekingResult, simulate_peeking

__all__ = [
    "PeekingResult",
    "SequentialResult",
    "VariantStats",
    "WelchResult",
    "ab_report",
    "assign_variant",
    "format_report",
    "hash_unit",
    "lift_ci",
    "mean_ci",
    "mixture_tau2",
    "msprt",
    "simulate_peeking",
    "srm_check",
    "validate_weights",
    "welch_test",
]
