"""Differentially private aggregates of a data directory, each user's contribution bounded.

One release (:func:`release`) gives, under one epsilon split evenly over its measurements:

- event-type counts: events per type, each user's first ``events_per_user`` events;
- per-variant reward counts and means (learned rewards: joined or default), each user's
  first ``rewards_per_user`` rewards, each clamped to ``reward_bounds``; with two variants
  or more, each treatment's difference from the control (the A/B report in DP form);
- per-topic interest counts and means, for public topic names the caller lists: a user's
  interest in a topic is the sum of the interest weights of their events on it (undecayed),
  clamped to ``(0, interest_cap)``; each user counts in their ``topics_per_user`` strongest
  positive topics.

Topic names must come from the caller: names read from the data would reveal a rare one.
Event types and variants are configuration, so all of them are listed (other event types
are counted together under ``"(other)"``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from engine.checks import check_int, check_number
from engine.errors import ValidationError
from engine.events import DEFAULT_WEIGHTS, EventTypes
from engine.privacy import dp
from engine.privacy.budget import Budget

NOTE = ("Each figure has Laplace noise of the given scale, calibrated by OpenDP so that the "
        "whole release costs the stated epsilon for any one user (their contribution bounded "
        "as listed); ci holds the exact figure of the bounded data with probability at least "
        "1 - alpha. Clipping and contribution limits bias figures towards the bounds.")


@dataclass(frozen=True)
class Bounds:
    """How much one user may contribute to a release (the price of a bounded sensitivity).

    Examples
    --------
    >>> Bounds(events_per_user=0)
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: events_per_user: must be an integer >= 1 (got 0)
    """

    events_per_user: int = 20
    """Events of each user counted (their first, in log order)."""
    rewards_per_user: int = 20
    """Rewards of each user counted (their first, in log order)."""
    reward_bounds: tuple[float, float] = (0.0, 1.0)
    """Each reward is clamped to this range."""
    topics_per_user: int = 5
    """Topics each user counts in (their strongest positive ones)."""
    interest_cap: float = 10.0
    """Each user's interest in a topic is clamped to ``(0, interest_cap)``."""

    def __post_init__(self) -> None:
        check_int("events_per_user", self.events_per_user, 1)
        check_int("rewards_per_user", self.rewards_per_user, 1)
        check_int("topics_per_user", self.topics_per_user, 1)
        check_number("interest_cap", self.interest_cap, low=0.0, strict=True)
        lo, hi = self.reward_bounds
        check_number("reward_bounds[0]", lo)
        check_number("reward_bounds[1]", hi)
        if not lo < hi:
            raise ValidationError("reward_bounds", "must be (low, high) with low < high",
                                     self.reward_bounds)


def event_data(store, bounds: Bounds, types: EventTypes, shards: int
               ) -> tuple[list[str], dict[str, dict[str, float]]]:
    """The event types of each user's first ``events_per_user`` events, and every user's
    interest per topic (the sum of their events' interest weights on it)."""
    kinds: list[str] = []
    interest: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    seen: dict[str, int] = defaultdict(int)
    for shard in range(shards):
        for events, _ in store.iter_events(shard, 0):
            for e in events:
                if seen[e.user_id] < bounds.events_per_user:
                    seen[e.user_id] += 1
                    kinds.append(e.type)
                if e.topics and types.known(e.type):
                    w = types.weight(e.type, e.value if e.value is not None else 0.0)
                    for topic in e.topics:
                        interest[e.user_id][topic] += w
    return kinds, interest


def topic_rows(interest: dict[str, dict[str, float]], topics: Sequence[str],
               bounds: Bounds) -> list[tuple[str, float]]:
    """One ``(topic, interest)`` row per user and listed topic of positive interest, at most
    ``topics_per_user`` per user (the strongest)."""
    listed = set(topics)
    rows = []
    for per_topic in interest.values():
        mine = sorted(((v, t) for t, v in per_topic.items() if t in listed and v > 0),
                      reverse=True)[:bounds.topics_per_user]
        rows.extend((t, v) for v, t in mine)
    return rows


def reward_rows(store, bounds: Bounds) -> list[tuple[str, float]]:
    """``(variant, reward)`` of each user's first ``rewards_per_user`` learned rewards."""
    return store.db.execute(
        "SELECT variant, value FROM (SELECT d.variant AS variant, r.value AS value, "
        "ROW_NUMBER() OVER (PARTITION BY r.user_id ORDER BY r.seq) AS k FROM rewards r "
        "JOIN decisions d USING (decision_id) WHERE r.status IN ('joined', 'default')) "
        "WHERE k <= ?", (bounds.rewards_per_user,)).fetchall()


def _grouped(rows, keys, value_bounds, d_in, eps, alpha) -> dict[str, dict]:
    """Noisy count and mean per key of ``(key, value)`` rows: two measurements of ``eps``."""
    counts = dp.noisy_counts((k for k, _ in rows), keys, d_in, eps, alpha)
    sums = dp.noisy_sums(rows, keys, value_bounds, d_in, eps, alpha)
    return {k: {"count": counts[k], "sum": sums[k],
                "mean": dp.mean_of(sums[k], counts[k], value_bounds, alpha)} for k in keys}


def _figures(groups: dict[str, dict]) -> dict:
    return {k: {"count": g["count"].as_dict(), "mean": g["mean"].as_dict()}
            for k, g in groups.items()}


def _differences(groups: dict[str, dict], control: str, bounds, alpha: float) -> dict:
    """Each treatment's mean minus the control's (post-processing); the interval holds the
    exact difference with probability at least ``1 - alpha`` (means at ``alpha / 2``)."""
    means = {k: dp.mean_of(g["sum"], g["count"], bounds, alpha / 2) for k, g in groups.items()}
    base = means.pop(control)
    return {k: {"difference": m.value - base.value,
                "ci": [m.ci[0] - base.ci[1], m.ci[1] - base.ci[0]]} for k, m in means.items()}


def release(store, epsilon: float, budget: Budget, *, topics: Sequence[str] = (),
            bounds: Bounds | None = None, event_types: EventTypes | None = None,
            alpha: float = 0.05, control: str | None = None) -> dict:
    """Release the aggregates of ``store``'s data directory at ``epsilon``, charged to
    ``budget`` first (:class:`~engine.privacy.budget.BudgetExceeded` if it does not fit).

    Examples
    --------
    >>> import tempfile
    >>> from engine.store import Store
    >>> with tempfile.TemporaryDirectory() as d:
    ...     store = Store(d)
    ...     report = release(store, 0.5, Budget(store, total=1.0))
    ...     store.close()
    >>> report["epsilon"], report["budget"]["left"], sorted(report["event_types"])[:2]
    (0.5, 0.5, ['(other)', 'click'])
    """
    epsilon = dp.check_epsilon(epsilon)
    alpha = dp.check_alpha(alpha)
    bounds = bounds or Bounds()
    types = event_types or EventTypes()
    topics = sorted({str(t) for t in topics})
    meta = {k: json.loads(v) for k, v in store.db.execute(
        "SELECT key, value FROM meta WHERE key IN ('shards', 'variants')")}
    variants = sorted(meta.get("variants") or {"default": None})
    control = control or variants[0]
    if control not in variants:
        raise ValidationError("control", f"must be one of {variants}", control)
    share = epsilon / (5 if topics else 3)  # per measurement: two per group, one of types
    what = (f"event_types, variants{', topics ' + ','.join(topics) if topics else ''}; "
            f"bounds {json.dumps(asdict(bounds))}")
    budget.charge(epsilon, what)
    kinds, interest = event_data(store, bounds, types, int(meta.get("shards", 1)))
    type_keys = sorted({*DEFAULT_WEIGHTS, *types.custom})
    groups = _grouped(reward_rows(store, bounds), variants, bounds.reward_bounds,
                      bounds.rewards_per_user, share, alpha)
    report = {
        "epsilon": epsilon, "alpha": alpha, "bounds": asdict(bounds), "note": NOTE,
        "event_types": {k: {"count": f.as_dict()} for k, f in dp.noisy_counts(
            kinds, type_keys, bounds.events_per_user, share, alpha).items()},
        "variants": _figures(groups)}
    if len(variants) > 1:
        report["experiment"] = {"control": control, "treatments": _differences(
            groups, control, bounds.reward_bounds, alpha)}
    if topics:
        tgroups = _grouped(topic_rows(interest, topics, bounds), topics,
                           (0.0, bounds.interest_cap), bounds.topics_per_user, share, alpha)
        report["topics"] = _figures(tgroups)
    report["budget"] = budget.summary()
    return report
