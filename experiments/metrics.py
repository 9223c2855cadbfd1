"""Summaries of simulation runs: mean reward, regret, CTR around a shift, recovery time, CIs.

A run is described by per-step arrays of one policy on one seed: the reward observed, the
instantaneous regret (expected reward of the best candidate minus that of the one shown),
and whether the user clicked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.abtest import mean_ci


def sample_mean_ci(values: npt.ArrayLike, alpha: float = 0.05) -> tuple[float, float, float]:
    """Mean and its ``1 - alpha`` Student-t interval over independent values (one per seed or
    per batch): :func:`engine.abtest.mean_ci` on the sample's mean, variance and count.

    Examples
    --------
    >>> m, lo, hi = sample_mean_ci(np.array([1.0, 2.0, 3.0]))  # 2 -+ t_{0.975, 2} / sqrt(3)
    >>> m, round(lo, 5), round(hi, 5)
    (2.0, -0.48414, 4.48414)
    """
    values = np.asarray(values, dtype=float)
    m = float(values.mean())
    if len(values) < 2:
        return m, math.nan, math.nan
    lo, hi = mean_ci(m, float(values.var(ddof=1)), len(values), alpha)
    return m, lo, hi


def batch_means(values: np.ndarray, n_batches: int = 20) -> np.ndarray:
    """Means of consecutive equal batches: near-independent pieces of one long run."""
    values = np.asarray(values, dtype=float)
    n = len(values) // n_batches * n_batches
    if n == 0:
        return values
    return values[:n].reshape(n_batches, -1).mean(axis=1)


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps (shorter at the start)."""
    values = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def recovery_steps(regret: np.ndarray, shift: int, window: int, tolerance: float = 0.1
                   ) -> float:
    """Steps after ``shift`` until the trailing mean regret is back within ``tolerance``
    (relative, plus 0.005 absolute) of its level just before the shift; ``nan`` if never.

    Examples
    --------
    >>> r = np.r_[np.full(100, 0.1), np.full(30, 0.5), np.full(70, 0.1)]
    >>> recovery_steps(r, shift=100, window=10)
    39.0
    """
    regret = np.asarray(regret, dtype=float)
    if not 0 < shift < len(regret):
        return math.nan
    before = regret[max(0, shift - window):shift].mean()
    target = before * (1 + tolerance) + 0.005
    roll = rolling_mean(regret, window)
    after = roll[shift:]
    degraded = np.nonzero(after > target)[0]
    if len(degraded) == 0:
        return 0.0
    back = np.nonzero(after[degraded[0]:] <= target)[0]
    if len(back) == 0:
        return math.nan
    return float(degraded[0] + back[0])


@dataclass
class PolicySummary:
    """One row of the results table (means over seeds, 95% CIs)."""

    policy: str
    n_seeds: int
    steps: int
    mean_reward: float
    reward_ci: tuple[float, float]
    mean_regret: float
    regret_ci: tuple[float, float]
    cumulative_regret: float
    ctr_before: float
    ctr_after: float
    recovery_steps: float
    sessions: dict | None = None
    """Session presets: :func:`summarize_sessions` of the finished sessions."""

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d.update(d.pop("sessions") or {})
        d["reward_ci_low"], d["reward_ci_high"] = d.pop("reward_ci")
        d["regret_ci_low"], d["regret_ci_high"] = d.pop("regret_ci")
        return d


def summarize(policy: str, rewards: np.ndarray, regrets: np.ndarray, clicks: np.ndarray,
              shift: int | None, window: int) -> PolicySummary:
    """Summarize (n_seeds, steps) arrays of one policy. With one seed, CIs use batch means."""
    rewards, regrets, clicks = (np.atleast_2d(np.asarray(a, dtype=float))
                                for a in (rewards, regrets, clicks))
    n_seeds, steps = rewards.shape
    if n_seeds >= 2:
        r_units, g_units = rewards.mean(axis=1), regrets.mean(axis=1)
    else:
        r_units, g_units = batch_means(rewards[0]), batch_means(regrets[0])
    m_r, lo_r, hi_r = sample_mean_ci(r_units)
    m_g, lo_g, hi_g = sample_mean_ci(g_units)
    if shift is not None and 0 < shift < steps:
        ctr_before = float(clicks[:, :shift].mean())
        ctr_after = float(clicks[:, shift:].mean())
        rec = [recovery_steps(regrets[s], shift, window) for s in range(n_seeds)]
        recovery = float(np.nanmean(rec)) if not all(math.isnan(x) for x in rec) else math.nan
    else:
        ctr_before = ctr_after = float(clicks.mean())
        recovery = math.nan
    return PolicySummary(policy, n_seeds, steps, m_r, (lo_r, hi_r), m_g, (lo_g, hi_g),
                         float(regrets.sum(axis=1).mean()), ctr_before, ctr_after, recovery)


def summarize_sessions(returns: npt.ArrayLike, lengths: npt.ArrayLike) -> dict:
    """Mean return and length of finished sessions with 95% t-intervals over the sessions
    (each one unit; ``nan`` where none finished, intervals ``nan`` under two).

    Examples
    --------
    >>> s = summarize_sessions([1.0, 2.0, 3.0], [2, 4, 6])
    >>> s["episode_return"], round(s["episode_return_lo"], 5), s["session_length"], s["n_sessions"]
    (2.0, -0.48414, 4.0, 3)
    """
    out: dict = {}
    for name, values in (("episode_return", returns), ("session_length", lengths)):
        values = np.asarray(values, dtype=float)
        m, lo, hi = sample_mean_ci(values) if len(values) else (math.nan,) * 3
        out.update({name: m, f"{name}_lo": lo, f"{name}_hi": hi})
    out["n_sessions"] = int(len(np.asarray(returns)))
    return out
