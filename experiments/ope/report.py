"""OPE output: a terminal table, JSON objects (one per estimator), a PNG of intervals."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.ope.base import Estimate


def to_table(estimates: list[Estimate]) -> str:
    head = f"{'estimator':<20}{'estimate':>10}{'95% interval':>22}{'ESS':>10}{'max w':>9}{'pi=0':>7}"
    lines = [head, "-" * len(head)]
    for e in estimates:
        lines.append(f"{e.name:<20}{e.estimate:>10.4f}  [{e.low:>8.4f}, {e.high:>8.4f}]"
                     f"{e.ess:>10.1f}{e.max_weight:>9.2f}{e.zero_target_share:>7.1%}")
    return "\n".join(lines)


def to_json_lines(estimates: list[Estimate]) -> str:
    return "\n".join(json.dumps(e.to_json()) for e in estimates)


def plot(estimates: list[Estimate], path: str | Path, title: str = "Off-policy estimates") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(estimates) + 1.5), dpi=110)
    y = range(len(estimates))
    vals = [e.estimate for e in estimates]
    ax.errorbar(vals, list(y), xerr=[[e.estimate - e.low for e in estimates],
                                     [e.high - e.estimate for e in estimates]],
                fmt="o", capsize=4, label="estimate with 95% bootstrap interval")
    ax.set_yticks(list(y), [e.name for e in estimates])
    ax.invert_yaxis()
    ax.set_xlabel("estimated policy value (mean reward)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
