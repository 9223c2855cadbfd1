"""``loopwise report --dp-epsilon E --data-dir D``: differentially private aggregates of a
data directory (:mod:`engine.privacy.aggregates`), charged to its privacy budget.

Prints each figure with its noise scale and interval (``--json``: the whole release as one
JSON object); ``--ledger`` lists every release instead, and what is left. A release that would exceed the directory's budget is refused with exit
status 2 and nothing is spent. The engine must not hold the directory while this runs.
"""

from __future__ import annotations

import argparse
import json

from engine.errors import ValidationError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", dest="data_dir", required=True, help="engine data directory")
    p.add_argument("--dp-epsilon", dest="epsilon", type=float, default=None,
                   help="privacy loss this release spends (split over its figures)")
    p.add_argument("--ledger", action="store_true",
                   help="list every release and the budget left instead of releasing")
    p.add_argument("--dp-budget", dest="total", type=float, default=None,
                   help="set the directory's total epsilon (default: the recorded one, or 2.0)")
    p.add_argument("--topics", default="", help="public topic names, comma-separated")
    p.add_argument("--events-per-user", dest="events_per_user", type=int, default=20)
    p.add_argument("--rewards-per-user", dest="rewards_per_user", type=int, default=20)
    p.add_argument("--reward-bounds", dest="reward_bounds", default="0,1",
                   help="LOW,HIGH: each reward is clamped to it")
    p.add_argument("--topics-per-user", dest="topics_per_user", type=int, default=5)
    p.add_argument("--interest-cap", dest="interest_cap", type=float, default=10.0)
    p.add_argument("--alpha", type=float, default=0.05, help="intervals hold with 1 - alpha")
    p.add_argument("--control", default=None, help="control variant of the experiment")
    p.add_argument("--json", action="store_true", help="one JSON object")


def _pair(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise ValidationError("--reward-bounds", "must be LOW,HIGH (two numbers)", text) from None
    return lo, hi


def main(args: argparse.Namespace) -> int:
    from engine.privacy.aggregates import Bounds, release
    from engine.privacy.budget import Budget
    from engine.store import Store

    if args.ledger:
        return _ledger(args)
    if args.epsilon is None:
        raise ValidationError("--dp-epsilon", "is required (or --ledger to list releases)")
    bounds = Bounds(args.events_per_user, args.rewards_per_user, _pair(args.reward_bounds),
                    args.topics_per_user, args.interest_cap)
    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    store = Store(args.data_dir, create=False)
    try:
        report = release(store, args.epsilon, Budget(store, args.total), topics=topics,
                         bounds=bounds, alpha=args.alpha, control=args.control)
    finally:
        store.close()
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def _ledger(args: argparse.Namespace) -> int:
    from engine.privacy.budget import Budget
    from engine.store import Store

    store = Store(args.data_dir, create=False)
    try:
        budget = Budget(store, args.total)
        rows, summary = budget.ledger(), budget.summary()
    finally:
        store.close()
    if args.json:
        print(json.dumps({"ledger": rows, "budget": summary}))
        return 0
    for row in rows:
        print(f"#{row['id']}  t={row['ts']:.0f}  epsilon {row['epsilon']:g}  {row['what']}")
    print(f"budget: {summary['spent']:g} of {summary['total']:g} spent, {summary['left']:g} left")
    return 0


def format_report(report: dict) -> str:
    """The release as plain text: one line per figure."""
    level = f"{1 - report['alpha']:.0%}"
    lines = [f"DP release: epsilon {report['epsilon']:g}; {level} intervals",
             f"budget: {report['budget']['spent']:g} of {report['budget']['total']:g} spent"]

    def fig(name: str, f: dict) -> str:
        return (f"  {name:<28} {f['value']:>12.4g}  [{f['ci'][0]:.4g}, {f['ci'][1]:.4g}]"
                f"  scale {f['scale']:.3g}")

    for section in ("event_types", "variants", "topics"):
        if section in report:
            lines.append(section.replace("_", " ") + ":")
            for key, figures in report[section].items():
                lines += [fig(f"{key} {what}", f) for what, f in figures.items()]
    for name, d in report.get("experiment", {}).get("treatments", {}).items():
        lines.append(f"  {name} - {report['experiment']['control']}: {d['difference']:.4g} "
                     f"[{d['ci'][0]:.4g}, {d['ci'][1]:.4g}]")
    lines.append(report["note"])
    return "\n".join(lines)
