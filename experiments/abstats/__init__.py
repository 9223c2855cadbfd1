"""Offline checks of the A/B statistics: vectorized peeking simulations.

The statistics themselves (assignment, accumulator, fixed-horizon and sequential tests, SRM,
report) are the engine's and are imported from :mod:`engine.abtest` only.

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

from .simulation import PeekingResult, simulate_peeking

__all__ = ["PeekingResult", "simulate_peeking"]
