"""OPE output: :class:`OPEResult` prints a terminal table, writes JSON lines (one object per
estimator) and plots the estimates with their intervals to a PNG (matplotlib, Agg)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from experiments.ope.base import Estimate


class Estimates:
    """A result's estimates (``self.estimates``, a list of :class:`Estimate`): iterable,
    indexed by position or estimator name, and written as JSON lines."""

    def __iter__(self) -> Iterator[Estimate]:
        return iter(self.estimates)

    def __len__(self) -> int:
        return len(self.estimates)

    def __getitem__(self, key: int | str) -> Estimate:
        if isinstance(key, str):
            for e in self.estimates:
                if e.name == key:
                    return e
            raise KeyError(f"no estimator named {key!r}; have {self.names}")
        return self.estimates[key]

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.estimates]

    def to_dicts(self) -> list[dict]:
        return [e.to_json() for e in self.estimates]

    def to_json_lines(self) -> str:
        """One JSON object per line per estimator: name, estimate, low, high, confidence,
        effective_sample_size and the weight diagnostics (NaN written as null)."""
        return "\n".join(json.dumps({k: _plain(v) for k, v in d.items()})
                         for d in self.to_dicts())


@dataclass
class OPEResult(Estimates):
    """The estimates of one evaluation, in estimator order.

    Iterate over it for :class:`~experiments.ope.base.Estimate` records, or index it by
    position or estimator name.

    Examples
    --------
    >>> from experiments.ope.base import Estimate
    >>> r = OPEResult([Estimate("IPS", 0.5, 0.4, 0.6, 80.0, 3.0, 1.0, 0.1, 100)], n_rounds=100,
    ...               n_actions=3, len_list=1, n_bootstrap=200, alpha=0.05)
    >>> r["IPS"].estimate, len(r)
    (0.5, 1)
    >>> print(r.to_json_lines())  # doctest: +ELLIPSIS
    {"name": "IPS", "estimate": 0.5, "low": 0.4, "high": 0.6, "confidence": 0.95, ...}
    """

    estimates: list[Estimate]
    n_rounds: int
    n_actions: int
    len_list: int
    n_bootstrap: int
    alpha: float
    refit: bool = False
    #: Lines that say what was evaluated (the source read, how the target was trained).
    notes: list[str] = field(default_factory=list)

    def to_dicts(self) -> list[dict]:
        return [{**d, "notes": self.notes} if self.notes else d for d in super().to_dicts()]

    def to_table(self) -> str:
        """A fixed-width table for the terminal."""
        level = f"{1 - self.alpha:.0%} interval"
        head = (f"{'estimator':<22}{'estimate':>10}{level:>24}{'ESS':>10}{'max w':>9}"
                f"{'mean w':>8}{'pi=0':>7}")
        lines = [*self.notes, f"{self.n_rounds} rounds, {self.n_actions} actions, {self.len_list} "
                 f"position(s); percentile bootstrap, {self.n_bootstrap} resamples"
                 f"{', reward model refit on each' if self.refit else ''}", head,
                 "-" * len(head)]
        for e in self.estimates:
            lines.append(f"{e.name:<22}{e.estimate:>10.4f}    [{e.low:>8.4f}, {e.high:>8.4f}]"
                         f"{e.ess:>10.1f}{e.max_weight:>9.2f}{e.mean_weight:>8.3f}"
                         f"{e.zero_target_share:>7.1%}")
        lines += [f"warning: {e.name}: {e.extra['warning']}" for e in self.estimates
                  if e.extra.get("warning")]
        if any(e.extra.get("interval", "").endswith("model fixed") for e in self.estimates):
            lines.append("model-based intervals hold the reward model fixed: DM's leaves out "
                         "the model's own error (too narrow); --refit-bootstrap refits it")
        return "\n".join(lines)

    def plot(self, path: str | Path, title: str = "Off-policy estimates") -> Path:
        """Write a PNG of every estimate with its interval; returns the path."""
        from experiments.plots import finish, pyplot

        plt = pyplot()
        est = self.estimates
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(est) + 1.5), dpi=110)
        y = list(range(len(est)))
        ax.errorbar([e.estimate for e in est], y,
                    xerr=[[max(e.estimate - e.low, 0.0) for e in est],
                          [max(e.high - e.estimate, 0.0) for e in est]],
                    fmt="o", capsize=4,
                    label=f"estimate with {1 - self.alpha:.0%} bootstrap interval")
        ax.set_yticks(y, [e.name for e in est])
        ax.invert_yaxis()
        ax.set_xlabel("estimated policy value (mean reward)")
        ax.set_title(f"{title} ({self.n_rounds} rounds)")
        return finish(fig, ax, path, grid="x")


def _plain(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v
