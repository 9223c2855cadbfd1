"""Vectorized simulations of peeking at a Bernoulli A/B test.

Used by the test suite (A/A false-positive rate under peeking, power and coverage of an A/B
test) and runnable as a script that prints the figures::

    python -m experiments.abstats.simulation

Every repetition draws, batch after batch, how many of ``batch_size`` new users the
treatment gets (Binomial with the treatment's traffic share) and how many of each arm's users
convert; after each batch both the fixed-horizon Welch test and the mixture SPRT are
evaluated on the cumulative counts, all repetitions at once, with the same functions the
report uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from engine.abtest import DEFAULT_MIN_N, DEFAULT_TARGET_N, lift_ci, msprt, welch_test
from engine.checks import check_int, check_probability

__all__ = ["PeekingResult", "simulate_peeking"]


@dataclass(frozen=True)
class PeekingResult:
    """Rates over repetitions of one simulated experiment with a look after every batch.

    Attributes
    ----------
    sequential_reject_rate : float
        Share of repetitions where the mixture SPRT rejected at some look.
    fixed_peeking_reject_rate : float
        Share where Welch's test had ``p < alpha`` at some look (peeking misuse).
    fixed_final_reject_rate : float
        Share where Welch's test had ``p < alpha`` at the last look only (its intended use).
    lift_ci_coverage : float
        Share where the final relative-lift CI covered the true lift.
    diff_ci_coverage : float
        Share where the final Welch CI covered the true difference.
    sequence_coverage : float
        Share where the confidence sequence covered the true difference at every look.
    """

    n_reps: int
    n_batches: int
    batch_size: int
    alpha: float
    true_diff: float
    true_lift: float
    sequential_reject_rate: float
    fixed_peeking_reject_rate: float
    fixed_final_reject_rate: float
    lift_ci_coverage: float
    diff_ci_coverage: float
    sequence_coverage: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _bernoulli_var(successes: np.ndarray, n: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        p = successes / n
        return np.where(n > 1, p * (1.0 - p) * n / (n - 1.0), np.nan)


def _cumulative_arms(p_control: float, p_treatment: float, shape: tuple[int, int],
                     batch_size: int, treatment_share: float, seed: int) -> tuple[np.ndarray, ...]:
    """Draw every batch of every repetition; return each arm's cumulative mean, variance and
    count at each look, ``(m_t, v_t, n_t, m_c, v_c, n_c)``, each of shape (n_reps, n_batches).

    A mean is nan where its arm has no user yet; a variance where it has fewer than two."""
    rng = np.random.default_rng(seed)
    n_t = rng.binomial(batch_size, treatment_share, size=shape)
    n_c = batch_size - n_t
    s_t = rng.binomial(n_t, p_treatment)
    s_c = rng.binomial(n_c, p_control)
    n_t, n_c = np.cumsum(n_t, axis=1), np.cumsum(n_c, axis=1)
    s_t, s_c = np.cumsum(s_t, axis=1), np.cumsum(s_c, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        m_t = np.where(n_t > 0, s_t / n_t, np.nan)
        m_c = np.where(n_c > 0, s_c / n_c, np.nan)
    return m_t, _bernoulli_var(s_t, n_t), n_t, m_c, _bernoulli_var(s_c, n_c), n_c


def simulate_peeking(
    p_control: float,
    p_treatment: float,
    *,
    n_reps: int = 2000,
    n_batches: int = 50,
    batch_size: int = 400,
    treatment_share: float = 0.5,
    alpha: float = 0.05,
    seed: int = 0,
    target_n: float = DEFAULT_TARGET_N,
    min_n: int = DEFAULT_MIN_N,
) -> PeekingResult:
    """Simulate ``n_reps`` Bernoulli A/B tests, each looked at after every batch.

    Parameters
    ----------
    p_control, p_treatment : float
        Conversion probabilities of the two arms (equal for an A/A test).
    n_reps, n_batches, batch_size : int
        Repetitions, looks per repetition, and users per batch (both arms together).
    treatment_share : float
        Traffic share of the treatment.
    alpha : float
        Level of every test and interval.
    seed : int
        Seed of the ``numpy.random.Generator``.
    target_n, min_n
        Passed to :func:`engine.abtest.sequential.msprt`.

    Examples
    --------
    >>> r = simulate_peeking(0.1, 0.1, n_reps=50, n_batches=5, seed=1)
    >>> 0.0 <= r.sequential_reject_rate <= r.fixed_peeking_reject_rate + 1.0
    True
    """
    p_control = check_probability("p_control", p_control)
    p_treatment = check_probability("p_treatment", p_treatment)
    treatment_share = check_probability("treatment_share", treatment_share)
    alpha = check_probability("alpha", alpha)
    n_reps = check_int("n_reps", n_reps, 1)
    n_batches = check_int("n_batches", n_batches, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    m_t, v_t, n_t, m_c, v_c, n_c = _cumulative_arms(
        p_control, p_treatment, (n_reps, n_batches), batch_size, treatment_share, seed)

    welch = welch_test(m_t, v_t, n_t, m_c, v_c, n_c, alpha)
    seq = msprt(m_t, v_t, n_t, m_c, v_c, n_c, alpha, target_n=target_n, min_n=min_n)
    true_diff = p_treatment - p_control
    true_lift = p_treatment / p_control - 1.0

    fixed_reject = np.nan_to_num(welch.p_value, nan=1.0) < alpha
    seq_reject = seq.p_value <= alpha
    lift, lo, hi = lift_ci(
        m_t[:, -1], v_t[:, -1], n_t[:, -1], m_c[:, -1], v_c[:, -1], n_c[:, -1], alpha
    )
    cs_lo = np.maximum.accumulate(seq.ci[0], axis=1)  # running intersection
    cs_hi = np.minimum.accumulate(seq.ci[1], axis=1)
    d_lo, d_hi = welch.ci[0][:, -1], welch.ci[1][:, -1]
    return PeekingResult(
        n_reps=n_reps,
        n_batches=n_batches,
        batch_size=batch_size,
        alpha=alpha,
        true_diff=true_diff,
        true_lift=true_lift,
        sequential_reject_rate=float(seq_reject.any(axis=1).mean()),
        fixed_peeking_reject_rate=float(fixed_reject.any(axis=1).mean()),
        fixed_final_reject_rate=float(fixed_reject[:, -1].mean()),
        lift_ci_coverage=float(((lo <= true_lift) & (true_lift <= hi)).mean()),
        diff_ci_coverage=float(((d_lo <= true_diff) & (true_diff <= d_hi)).mean()),
        sequence_coverage=float(((cs_lo <= true_diff) & (true_diff <= cs_hi)).all(axis=1).mean()),
    )


if __name__ == "__main__":
    import time

    for label, (pc, pt) in {
        "A/A 0.10 vs 0.10": (0.1, 0.1),
        "A/B 0.10 vs 0.12": (0.1, 0.12),
    }.items():
        start = time.perf_counter()
        result = simulate_peeking(pc, pt, n_reps=2000, n_batches=50, batch_size=400, seed=7)
        elapsed = time.perf_counter() - start
        print(f"{label} ({elapsed:.2f} s): {result.to_dict()}")
