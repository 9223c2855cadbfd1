"""Results folders: Parquet tables, PNG plots and a short Markdown report."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np

from experiments.metrics import PolicySummary
from experiments.plots import cumulative_regret, return_over_training, reward_over_time


def _fmt(x: float, spec: str = ".4f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _shift_kind(sim) -> str:
    """What the simulator's abrupt shift changes, in words."""
    parts = [f"{sim.shift_fraction:.0%} of users' tastes"] if sim.shift_fraction else []
    if getattr(sim, "shift_topic_jump", 0.0) or getattr(sim, "shift_weight_flip", 0.0):
        parts.append("the reward model for everyone: topics' appeal"
                     + (", popularity's and clickbait's weights" if sim.shift_weight_flip else ""))
    return "; ".join(parts) or "nothing"


def format_table(summaries: list[PolicySummary]) -> str:
    """A plain-text table, one row per policy."""
    head = ["policy", "mean reward [95% CI]", "mean regret [95% CI]", "CTR before", "CTR after",
            "recovery steps"]
    rows = [[s.policy,
             f"{_fmt(s.mean_reward)} [{_fmt(s.reward_ci[0])}, {_fmt(s.reward_ci[1])}]",
             f"{_fmt(s.mean_regret)} [{_fmt(s.regret_ci[0])}, {_fmt(s.regret_ci[1])}]",
             _fmt(s.ctr_before, ".3f"), _fmt(s.ctr_after, ".3f"), _fmt(s.recovery_steps, ".0f")]
            for s in summaries]
    if any(s.sessions for s in summaries):  # session presets: return and length per session
        head += ["return/session [95% CI]", "session length [95% CI]", "sessions"]
        for row, s in zip(rows, summaries, strict=True):
            e = s.sessions or {}
            row += [f"{_fmt(e.get('episode_return'), '.3f')} [{_fmt(e.get('episode_return_lo'), '.3f')}, "
                    f"{_fmt(e.get('episode_return_hi'), '.3f')}]",
                    f"{_fmt(e.get('session_length'), '.2f')} [{_fmt(e.get('session_length_lo'), '.2f')}, "
                    f"{_fmt(e.get('session_length_hi'), '.2f')}]", str(e.get("n_sessions", "-"))]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, sep, *body])


def write_report(out: Path, cfg, sim, results, summaries: list[PolicySummary], shift, window
                 ) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    steps = len(results[0].rewards)
    cols: dict[str, list] = {"policy": [], "seed": [], "step": [], "reward": [], "regret": [],
                             "click": [], "phase": []}
    for r in results:
        cols["policy"] += [r.policy] * steps
        cols["seed"] += [r.seed] * steps
        cols["step"] += list(range(steps))
        cols["reward"] += r.rewards.tolist()
        cols["regret"] += r.regrets.tolist()
        cols["click"] += r.clicks.tolist()
        cols["phase"] += r.phases.astype(int).tolist()
    pq.write_table(pa.table(cols), out / "steps.parquet")
    pq.write_table(pa.Table.from_pylist([s.to_dict() for s in summaries]), out / "summary.parquet")
    names = [s.policy for s in summaries]
    rewards = {p: np.stack([r.rewards for r in results if r.policy == p]) for p in names}
    regrets = {p: np.stack([r.regrets for r in results if r.policy == p]) for p in names}
    reward_over_time(rewards, shift, out / "reward.png", window,
                     title=f"Reward over time ({cfg.preset}, {len(cfg.seeds)} seed(s))")
    cumulative_regret(regrets, shift, out / "regret.png",
                      title=f"Cumulative regret ({cfg.preset})")
    sessions = any(s.sessions for s in summaries)
    if sessions:
        session_window = _plot_sessions(out, cfg, results, names)
    config = asdict(cfg) if is_dataclass(cfg) else dict(cfg)
    best = max(summaries, key=lambda s: s.mean_reward)
    lines = [
        f"# {out.name}",
        "",
        f"Preset `{cfg.preset}`, {steps:,} steps per run, seeds {list(cfg.seeds)}, "
        f"{sim.n_users:,} users, {sim.n_candidates} candidates per step"
        + (f", abrupt shift at step {shift:,} ({_shift_kind(sim)})." if shift else "."),
        "",
        "```",
        format_table(summaries),
        "```",
        "",
        f"Best mean reward: **{best.policy}** ({best.mean_reward:.4f}). CIs are 95% t-intervals "
        "over seeds (one seed: over 20 batch means of the run). Recovery: steps after the "
        f"shift until the {window}-step trailing regret returns within 10% of its pre-shift level."
        + (" Return/session and session length: means over the sessions that finished in the "
           "run (all seeds; sessions still open at the end are left out), 95% t-intervals over "
           "those sessions." if any(s.sessions for s in summaries) else ""),
        "",
        "![reward over time](reward.png)",
        "",
        "![cumulative regret](regret.png)",
        "",
        *([f"Return per session over training (`return.png`): trailing mean over the last "
           f"{session_window} finished sessions (seeds pooled) against the step each ended at.",
           "", "![return per session over training](return.png)", ""] if sessions else []),
        "## Configuration",
        "",
        "```json",
        json.dumps(config, indent=2, default=str),
        "```",
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _plot_sessions(out: Path, cfg, results, names: list[str]) -> int:
    """``return.png``: return per session over training; returns the window (sessions)."""
    per = {p: (np.concatenate([r.episode_steps for r in results if r.policy == p]),
               np.concatenate([r.episode_returns for r in results if r.policy == p]))
           for p in names}
    fewest = min((len(v[1]) for v in per.values()), default=0)
    window = max(5, fewest // 20)
    return_over_training(per, out / "return.png", window,
                         title=f"Return per session over training ({cfg.preset}, "
                               f"{len(cfg.seeds)} seed(s))")
    return window
