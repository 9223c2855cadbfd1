"""Simulator configuration and presets."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes the simulated users and items.

    Attributes
    ----------
    n_users: Population size.
    n_items: Items in the catalog at the start.
    n_topics: Topics; an item has one, and its embedding leans toward it.
    n_candidates: K, candidates offered per step.
    slate_size: L, slots shown per step (1: a single recommendation).
    n_regions: Observable user attribute; users of a region share part of their interests.
    region_strength: How much of a user's latent interest comes from the region (0..1).
    affinity_scale: Weight of user-item affinity in the click logit.
    click_bias: Intercept of the click logit (sets the base click rate).
    popularity_weight: Weight of log-popularity in the click logit.
    clickbait_weight: Weight of an item's clickbait score in the click logit.
    quality_clickbait_corr: How strongly clickbait items have low quality (0: independent).
    fatigue_weight: Click-logit penalty per unit of decayed exposure to the item's topic.
    fatigue_decay: Per-step decay of a user's topic exposure.
    drift_std: Gradual drift: std of the noise added to a user's interests each step they act.
    shift_step: Step at which an abrupt shift happens (None: never).
    shift_fraction: Fraction of users whose interests are redrawn at the shift.
    shift_topic_jump: At the shift, every topic's click logit moves by a draw of N(0, this
        squared), for everyone: some topics' appeal jumps, others' falls (0: none).
    shift_weight_flip: At the shift, the weights of popularity and clickbait in the click
        logit become ``(1 - 2 * this)`` times what they were, for everyone (1: they change
        sign: clickbait stops paying and costs instead; 0: no change).
    new_item_every: Steps between arrivals of new items (None: closed catalog).
    new_items_per_arrival: Items per arrival.
    max_items: Catalog capacity (ids range over it).
    fresh_steps: Items younger than this many steps are fresh (the freshness feature is
        ``exp(-age / fresh_steps)``).
    fresh_boost: Fresh items are this many times likelier to be drawn as candidates.
    purchase_rate: P(purchase | click) scales with quality times this.
    reward_click, reward_dwell, reward_purchase: Reward = click weight + dwell x weight +
        purchase x weight (expected reward lies in [0, 1] when the three sum to at most 1).
    satisfaction_gain: Change of satisfaction per click, times (quality - 0.5).
    clickbait_cost: Satisfaction lost per click, times the clickbait score.
    leave_bias: Per-step leave logit at satisfaction 0 (session mode).
    time_budget: Session steps a user has before leaving at most.
    step_seconds: Simulated seconds per step (the clock the engine can follow).
    horizon: Steps per episode in stream mode (truncation).
    """

    n_users: int = 2000
    n_items: int = 1000
    n_topics: int = 12
    n_candidates: int = 20
    slate_size: int = 1
    n_regions: int = 4
    region_strength: float = 0.5
    affinity_scale: float = 4.0
    click_bias: float = -2.5
    popularity_weight: float = 0.3
    clickbait_weight: float = 0.0
    quality_clickbait_corr: float = 0.0
    fatigue_weight: float = 0.0
    fatigue_decay: float = 0.9
    drift_std: float = 0.0
    shift_step: int | None = None
    shift_fraction: float = 0.5
    shift_topic_jump: float = 0.0
    shift_weight_flip: float = 0.0
    new_item_every: int | None = None
    new_items_per_arrival: int = 5
    max_items: int = 2000
    fresh_steps: int = 500
    fresh_boost: float = 5.0
    purchase_rate: float = 0.3
    reward_click: float = 0.6
    reward_dwell: float = 0.3
    reward_purchase: float = 0.1
    satisfaction_gain: float = 0.0
    clickbait_cost: float = 0.0
    leave_bias: float = -3.0
    time_budget: int = 50
    step_seconds: float = 60.0
    horizon: int = 100_000

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "shift_step" or f.name == "new_item_every":
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                    raise ValueError(f"{f.name}: must be None or an integer >= 1 (got {v!r})")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{f.name}: must be a finite number (got {v!r})")
        for name in ("n_users", "n_items", "n_topics", "n_candidates", "slate_size", "n_regions",
                     "max_items", "fresh_steps", "time_budget", "horizon", "new_items_per_arrival"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1 (got {v!r})")
        if self.n_candidates > self.n_items:
            raise ValueError(f"n_candidates: must be at most n_items={self.n_items} "
                             f"(got {self.n_candidates})")
        if self.slate_size > self.n_candidates:
            raise ValueError(f"slate_size: must be at most n_candidates={self.n_candidates} "
                             f"(got {self.slate_size})")
        if self.max_items < self.n_items:
            raise ValueError(f"max_items: must be at least n_items={self.n_items} "
                             f"(got {self.max_items})")
        for name in ("region_strength", "shift_fraction", "fatigue_decay", "purchase_rate",
                     "quality_clickbait_corr", "shift_weight_flip"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: must lie in [0, 1] (got {v!r})")
        for name in ("drift_std", "fatigue_weight", "clickbait_weight", "step_seconds",
                     "fresh_boost", "shift_topic_jump"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0 (got {getattr(self, name)!r})")


PRESETS: dict[str, dict] = {
    "stationary": {},
    "drifting": {"shift_step": 10_000, "shift_fraction": 0.5, "drift_std": 0.002},
    # the reward model itself changes at the shift, for everyone (users keep their tastes)
    "trend": {"shift_step": 10_000, "shift_fraction": 0.0, "clickbait_weight": 1.5,
              "shift_topic_jump": 1.5, "shift_weight_flip": 1.0},
    "fatigue": {"fatigue_weight": 0.8, "fatigue_decay": 0.9},
    "cold_start": {"new_item_every": 50, "new_items_per_arrival": 5, "max_items": 4000},
    "long_term": {"clickbait_weight": 2.5, "quality_clickbait_corr": 0.9,
                  "satisfaction_gain": 1.0, "clickbait_cost": 1.2, "leave_bias": -2.5,
                  "time_budget": 60},
}


def make_config(preset: str = "stationary", **overrides) -> SimConfig:
    """A preset's configuration with ``overrides`` applied.

    Examples
    --------
    >>> make_config("drifting", shift_step=500).shift_step
    500
    >>> make_config("windy")
    Traceback (most recent call last):
    ...
    ValueError: preset: unknown preset 'windy'; choose from ['stationary', 'drifting', 'trend', 'fatigue', 'cold_start', 'long_term']
    """
    if preset not in PRESETS:
        raise ValueError(f"preset: unknown preset {preset!r}; choose from {list(PRESETS)}")
    names = {f.name for f in fields(SimConfig)}
    for key in overrides:
        if key not in names:
            raise ValueError(f"{key}: unknown simulator setting; see SimConfig")
    return replace(SimConfig(), **{**PRESETS[preset], **overrides})
