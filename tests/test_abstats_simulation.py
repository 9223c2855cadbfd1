"""Simulation checks of the A/B statistics: peeking in an A/A test, power and coverage in A/B.

Seeded and vectorized (each simulation evaluates 100,000 looks at once, about a second).
Run with ``-rA`` (or ``-s``) to see the figures printed by each test.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.abtest import VariantStats, ab_report, assign_variant
from experiments.abstats import simulate_peeking

ALPHA = 0.05
SEQ_TOLERANCE = 0.015  # sequential FPR must be <= alpha + 0.015 (3 s.e. of a rate at 2,000 reps)
PEEKING_FLOOR = 0.10  # the peeked t-test must exceed twice alpha
COVERAGE_MARGIN = 0.02  # |coverage - 0.95| <= 0.02 (about 4 s.e. at 2,000 reps)


@pytest.fixture(scope="module")
def aa():
    # 2,000 A/A tests, Bernoulli(0.1) in both arms, 400 users per batch split 50/50,
    # a look after each of 50 batches (10,000 users per arm at the end).
    return simulate_peeking(0.10, 0.10, n_reps=2000, n_batches=50, batch_size=400, seed=20240)


@pytest.fixture(scope="module")
def ab():
    # Same design with a planted lift: 0.10 -> 0.12 (difference 0.02, relative lift 20%).
    return simulate_peeking(0.10, 0.12, n_reps=2000, n_batches=50, batch_size=400, seed=20241)


def test_aa_sequential_test_survives_peeking_while_t_test_does_not(aa):
    figures = (
        f"A/A, 2000 reps x 50 looks: sequential FPR {aa.sequential_reject_rate:.4f}, "
        f"peeked Welch FPR {aa.fixed_peeking_reject_rate:.4f}, "
        f"single-look Welch FPR {aa.fixed_final_reject_rate:.4f}"
    )
    print(figures)
    assert aa.sequential_reject_rate <= ALPHA + SEQ_TOLERANCE, figures
    assert aa.fixed_peeking_reject_rate > PEEKING_FLOOR, figures
    # Welch's test itself is calibrated when used as intended (one look at the end).
    assert abs(aa.fixed_final_reject_rate - ALPHA) <= 0.02, figures


def test_aa_confidence_sequence_covers_zero_at_every_look(aa):
    figures = f"A/A time-uniform coverage of the confidence sequence {aa.sequence_coverage:.4f}"
    print(figures)
    assert aa.sequence_coverage >= 1 - ALPHA - SEQ_TOLERANCE, figures


def test_ab_planted_lift_is_detected_and_covered(ab):
    figures = (
        f"A/B 0.10 vs 0.12, 2000 reps: sequential power {ab.sequential_reject_rate:.4f}, "
        f"single-look Welch power {ab.fixed_final_reject_rate:.4f}, "
        f"lift CI coverage {ab.lift_ci_coverage:.4f}, diff CI coverage {ab.diff_ci_coverage:.4f}, "
        f"confidence-sequence coverage {ab.sequence_coverage:.4f}"
    )
    print(figures)
    assert ab.sequential_reject_rate >= 0.90, figures
    assert ab.fixed_final_reject_rate >= 0.95, figures
    assert abs(ab.lift_ci_coverage - (1 - ALPHA)) <= COVERAGE_MARGIN, figures
    assert abs(ab.diff_ci_coverage - (1 - ALPHA)) <= COVERAGE_MARGIN, figures
    assert ab.sequence_coverage >= 1 - ALPHA - SEQ_TOLERANCE, figures


def _run_experiment(p_control: float, p_treatment: float, seed: int, n_users: int = 40_000):
    """The real path, end to end: sticky assignment, per-variant accumulators, reports at
    every peek carried forward with ``previous``."""
    split = {"control": 1.0, "treatment": 1.0}
    rate = {"control": p_control, "treatment": p_treatment}
    rng = np.random.default_rng(seed)
    stats = {name: VariantStats() for name in split}
    report = None
    for start in range(0, n_users, 4_000):  # ten peeks
        batch: dict[str, list[float]] = {name: [] for name in split}
        for i in range(start, start + 4_000):
            variant = assign_variant(f"user-{seed}-{i}", split, salt="exp-lift")
            batch[variant].append(float(rng.random() < rate[variant]))
        for name, values in batch.items():
            stats[name].update(values)
        report = ab_report(stats, split, control="control", previous=report)
    return report


def test_ab_end_to_end_detects_the_planted_lift():
    report = _run_experiment(0.10, 0.12, seed=1)
    cmp = report["comparisons"]["treatment"]
    print(
        f"end-to-end A/B: lift {cmp['lift']:.4f} CI {cmp['lift_ci']}, "
        f"Welch p {cmp['welch']['p_value']:.3g}, sequential p {cmp['sequential']['p_value']:.3g}"
    )
    assert cmp["decision"] == "significant", cmp
    assert cmp["fixed_horizon_significant"], cmp
    assert cmp["lift_ci"][0] <= 0.20 <= cmp["lift_ci"][1], cmp
    assert cmp["diff_ci"][0] <= 0.02 <= cmp["diff_ci"][1], cmp
    lo, hi = cmp["sequential"]["confidence_sequence"]
    assert lo <= 0.02 <= hi and lo > 0.0, cmp
    assert not report["srm"]["mismatch"] and report["warnings"] == [], report


def test_aa_end_to_end_stays_quiet():
    report = _run_experiment(0.10, 0.10, seed=2)
    cmp = report["comparisons"]["treatment"]
    assert cmp["decision"] == "not significant", cmp
    lo, hi = cmp["sequential"]["confidence_sequence"]
    assert lo <= 0.0 <= hi, cmp
