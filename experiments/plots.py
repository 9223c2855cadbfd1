"""PNG plots of simulation results (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from experiments.metrics import rolling_mean


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def finish(fig, ax, path: str | Path, grid: str = "both") -> Path:
    """Grid, legend, tight layout; save the figure as ``path`` and close it."""
    ax.grid(axis=grid, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    pyplot().close(fig)
    return path


def _mark_shift(ax, shift: int | None) -> None:
    if shift is not None:
        ax.axvline(shift, color="black", linestyle="--", linewidth=1.0, label=f"shift (step {shift})")


def reward_over_time(rewards: Mapping[str, np.ndarray], shift: int | None, path: str | Path,
                     window: int, title: str = "Reward over time") -> Path:
    """Trailing-mean reward per policy (mean over seeds), with the shift marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for name, r in rewards.items():
        series = rolling_mean(np.atleast_2d(r).mean(axis=0), window)
        start = min(window, len(series) - 1)  # skip the warm-up of the trailing mean
        ax.plot(np.arange(start + 1, len(series) + 1), series[start:], label=name, linewidth=1.4)
    _mark_shift(ax, shift)
    ax.set_xlabel("step (decisions)")
    ax.set_ylabel(f"reward, trailing mean over {window} steps")
    ax.set_title(title)
    return finish(fig, ax, path)


def cumulative_regret(regrets: Mapping[str, np.ndarray], shift: int | None, path: str | Path,
                      title: str = "Cumulative regret") -> Path:
    """Cumulative regret per policy (mean over seeds, band = min..max over seeds)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for name, g in regrets.items():
        cum = np.cumsum(np.atleast_2d(g), axis=1)
        x = np.arange(1, cum.shape[1] + 1)
        line, = ax.plot(x, cum.mean(axis=0), label=name, linewidth=1.4)
        if cum.shape[0] > 1:
            ax.fill_between(x, cum.min(axis=0), cum.max(axis=0), color=line.get_color(), alpha=0.15)
    _mark_shift(ax, shift)
    ax.set_xlabel("step (decisions)")
    ax.set_ylabel("cumulative regret (expected reward lost)")
    ax.set_title(title)
    return finish(fig, ax, path)


def return_over_training(sessions: Mapping[str, tuple[np.ndarray, np.ndarray]],
                         path: str | Path, window: int,
                         title: str = "Return per session over training") -> Path:
    """Per policy, the trailing mean return of the last ``window`` finished sessions against
    the step they ended at (one point per step, once all that ended there are in);
    ``sessions`` maps a policy to (end steps, returns) of its
    sessions (seeds pooled, ordered here by end step)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for name, (steps, returns) in sessions.items():
        steps, returns = np.asarray(steps, dtype=float), np.asarray(returns, dtype=float)
        if not len(steps):
            continue
        order = np.argsort(steps, kind="stable")
        steps, trail = steps[order], rolling_mean(returns[order], window)
        last = np.r_[steps[1:] != steps[:-1], True]  # one point per step: after its sessions
        ax.plot(steps[last], trail[last], label=name, linewidth=1.4)
    ax.set_xlabel("step (decisions) at which the session ended")
    ax.set_ylabel(f"return per session, trailing mean over {window} sessions")
    ax.set_title(title)
    return finish(fig, ax, path)
