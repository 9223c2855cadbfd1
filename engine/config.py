"""EngineConfig: every setting of an :class:`~engine.engine.Engine`, checked in one place.

The same object serves Python (``Engine(config=EngineConfig(...))`` or ``Engine(**settings)``),
``serve.yaml``'s ``engine:`` mapping and JSON (:meth:`EngineConfig.from_mapping`, whose
errors name the key as the file spells it, e.g. ``engine.wait_window``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from engine.checks import MIN_WALL_TIME, check_int, check_keys, check_number, settings_from
from engine.errors import ValidationError, ValidationTypeError
from engine.events import EventTypes, Limits
from engine.featurizer import Featurizer
from engine.profile import ProfileConfig
from engine.rollout import CHALLENGER, RolloutConfig, check_policy_spec
from engine.router import Router


@dataclass(frozen=True)
class EngineConfig:
    """An engine's settings, validated when built (a bad one raises a
    :class:`~engine.errors.ValidationError` naming it, the constraint and the value).

    Examples
    --------
    >>> cfg = EngineConfig.from_mapping({"policy": "uniform", "wait_window": 60})
    >>> cfg.wait_window, cfg.policy
    (60.0, 'uniform')
    >>> EngineConfig.from_mapping({"wait_window": -1})
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: engine.wait_window: must be >= 0.0 (got -1)
    """

    policy: object = "lints"
    """Policy name for :func:`policies.make` (e.g. ``"lints"``) or a policy object."""
    policy_params: Mapping | None = None
    """Keyword arguments of the named policy (with ``variants``, give each its own)."""
    variants: Mapping | None = None
    """Online A/B test: ``{name: {"policy": ..., "params": {...}, "weight": w}}``; users are
    assigned stickily by a salted hash of their id. ``None``: one variant ``"default"``
    running ``policy``."""
    salt: str = "loopwise"
    """Salt of the variant assignment hash (change it to re-randomize an experiment)."""
    shards: int = 1
    """Number of profile shards (fixed once the data directory exists)."""
    backend: str = "inline"
    """``"inline"`` (shards in this process) or ``"ray"`` (one actor per shard)."""
    ray_address: str | None = None
    """With ``backend="ray"``: address of an existing Ray cluster (default: local Ray)."""
    item_features: int = 0
    """Length of each candidate's numeric ``features`` list."""
    context_features: Sequence[str] = ()
    """Names of the numeric context features a request may carry."""
    max_candidates: int = 1000
    """The most candidates one rank request may carry."""
    profile: ProfileConfig | Mapping | None = None
    """A :class:`~engine.profile.ProfileConfig` or a mapping of its fields (kept as the
    :class:`~engine.profile.ProfileConfig`)."""
    event_types: Mapping[str, float] | None = None
    """Extra event types with their interest weights, e.g. ``{"share": 1.5}``."""
    wait_window: float = 3600.0
    """Seconds (engine clock) a decision waits for its reward before ``default_reward`` is
    learned in its place."""
    default_reward: float = 0.0
    """Reward learned when none arrives in time (within ``reward_range``)."""
    learn_batch: int = 1
    """Joined records per policy update."""
    snapshot_every: int = 100_000
    """Events between automatic profile snapshots."""
    seed: int = 0
    """Seed of the engine's sampling generator and of the models it builds."""
    clock: Callable[[], float] | None = None
    """Callable returning the current time in seconds (``None``: the wall clock).
    Experiments pass the simulator's clock, so windows and decay are deterministic."""
    synchronous: str = "NORMAL"
    """Durability of the store: ``"NORMAL"`` survives a killed process, ``"FULL"`` a power
    cut (every commit and journal record synced to disk)."""
    learner: str = "auto"
    """Where policies train: ``"local"``, ``"ray"`` (an actor per variant) or ``"auto"``
    (the actor with the Ray backend)."""
    learner_gpus: float = 0.0
    """GPUs each learner actor reserves."""
    async_learning: bool = False
    """Keep deciding with the current policy version while the actor trains the next."""
    reward_range: tuple[float, float] = (-1e6, 1e6)
    """``(low, high)`` of the rewards and event values accepted."""
    min_event_time: float | None = None
    """Earliest event time accepted (``None``: 2000-01-01 on the wall clock, 0 with a
    ``clock`` of your own)."""
    max_event_lead: float = 86_400.0
    """How far past the engine's clock an event time may lie, in seconds."""
    session_gap: float = 1800.0
    """Seconds (engine clock) after a decision within which the user's next decision
    continues the session (a ``session_end`` event ends it sooner); also the event-time gap
    that starts a new session in the profile's ``session`` view."""
    pseudonym_key_file: str | None = None
    """File holding the key of user-id pseudonyms (HMAC-SHA256), outside the data directory:
    the store, logs and exports then hold pseudonyms only. ``None``:
    ``$LOOPWISE_PSEUDONYM_KEY_FILE``, or raw ids (the engine says so once)."""
    store_text: bool = False
    """Keep events' free text as given; by default only its keywords are stored (the bag of
    words the profile learns from, see :mod:`engine.privacy.minimal`)."""
    retention_days: float | None = None
    """Days (event time) that events, decisions and rewards are kept: older ones are deleted
    at open and as the engine runs; profiles keep their decayed aggregates and policies
    their learned state. ``None``: kept until erased."""
    dp_total_epsilon: float | None = None
    """Total privacy loss that DP releases from the data directory may spend (``None``: the
    one recorded in it, or 2.0); see :mod:`engine.privacy.budget`."""
    rollout: RolloutConfig | Mapping | None = None
    """A challenger's safe rollout against the (one) variant: a
    :class:`~engine.rollout.RolloutConfig` or a mapping of its fields, e.g.
    ``{"challenger": {"policy": "linucb"}, "steps": [0.1, 0.5, 1.0], "margin": 0.01}``."""
    limits: Limits = field(init=False, repr=False, compare=False)
    """The accepted domain of rewards and event times (:class:`~engine.events.Limits`)."""

    def __post_init__(self) -> None:
        check_number("wait_window", self.wait_window, low=0.0)
        check_number("session_gap", self.session_gap, low=0.0, strict=True)
        if not isinstance(self.reward_range, (tuple, list)) or len(self.reward_range) != 2:
            raise ValidationError("reward_range", "must be a (low, high) pair", self.reward_range)
        min_time = self.min_event_time
        if min_time is None:  # a simulation's clock may start anywhere, the wall's not
            min_time = MIN_WALL_TIME if self.clock is None else 0.0
        limits = Limits(tuple(self.reward_range), min_time, self.max_event_lead)
        check_number("default_reward", self.default_reward, *limits.reward_range)
        check_int("learn_batch", self.learn_batch, 1)
        check_int("snapshot_every", self.snapshot_every, 1)
        check_int("seed", self.seed, 0)
        _check_choice("backend", self.backend, ("inline", "ray"))
        _check_choice("learner", self.learner, ("auto", "local", "ray"))
        check_number("learner_gpus", self.learner_gpus, low=0.0)
        _check_choice("synchronous", self.synchronous, ("NORMAL", "FULL"))
        if not isinstance(self.salt, str):
            raise ValidationTypeError("salt", "must be a string", self.salt)
        key = self.pseudonym_key_file  # (the key file itself is read at open)
        if key is not None and not isinstance(key, (str, os.PathLike)):
            raise ValidationTypeError("pseudonym_key_file", "must be a file path", key)
        if not isinstance(self.store_text, bool):
            raise ValidationTypeError("store_text", "must be true or false", self.store_text)
        for name in ("retention_days", "dp_total_epsilon"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), low=0.0, strict=True)
        if self.clock is not None and not callable(self.clock):
            raise ValidationTypeError("clock", "must be a callable returning seconds", self.clock)
        profile = self.profile
        if isinstance(profile, Mapping):
            check_keys(profile, [f.name for f in dataclasses.fields(ProfileConfig)], "profile")
            profile = ProfileConfig(**profile)
        elif profile is not None and not isinstance(profile, ProfileConfig):
            raise ValidationTypeError("profile", "must be a ProfileConfig or a mapping", profile)
        EventTypes(custom=dict(self.event_types or {}))
        Featurizer(self.item_features, self.context_features, self.max_candidates)
        Router(self.shards)
        _check_variants(self.variants, self.policy_params)
        set_ = object.__setattr__  # frozen: the normalized values, once
        if self.rollout is not None:
            set_(self, "rollout", RolloutConfig.from_mapping(self.rollout))
            names = list(self.variant_specs())
            if len(names) != 1 or names[0] == CHALLENGER:
                raise ValidationError("rollout", "needs one variant (the champion), not named "
                                      f"{CHALLENGER!r}", names)
        set_(self, "profile", dataclasses.replace(profile or ProfileConfig(),
                                                  session_gap=float(self.session_gap)))
        set_(self, "session_gap", float(self.session_gap))
        set_(self, "context_features", tuple(self.context_features))
        set_(self, "reward_range", limits.reward_range)
        set_(self, "wait_window", float(self.wait_window))
        set_(self, "default_reward", float(self.default_reward))
        set_(self, "limits", limits)

    @classmethod
    def from_mapping(cls, mapping: Mapping, where: str = "engine") -> EngineConfig:
        """The config a YAML or JSON mapping describes; errors name the key under ``where``
        (``engine.wait_window: must be >= 0.0 (got -1)``). Lists stand for pairs and tuples.

        Examples
        --------
        >>> EngineConfig.from_mapping({"wait_widow": 5})
        Traceback (most recent call last):
        ...
        policies.errors.ValidationError: engine.wait_widow: unknown setting; allowed: ['async_learning', 'backend', 'clock', 'context_features', 'default_reward', 'dp_total_epsilon', 'event_types', 'item_features', 'learn_batch', 'learner', 'learner_gpus', 'max_candidates', 'max_event_lead', 'min_event_time', 'policy', 'policy_params', 'profile', 'pseudonym_key_file', 'ray_address', 'retention_days', 'reward_range', 'rollout', 'salt', 'seed', 'session_gap', 'shards', 'snapshot_every', 'store_text', 'synchronous', 'variants', 'wait_window']
        """
        return settings_from(cls, mapping, where, "setting names to values")

    @classmethod
    def setting_names(cls) -> list[str]:
        """The names of every setting (the dataclass fields a caller may give)."""
        return [f.name for f in dataclasses.fields(cls) if f.init]

    def variant_specs(self) -> dict[str, dict]:
        """``{name: {"policy", "params", "weight"}}`` of every variant (one ``"default"``
        variant running ``policy`` unless ``variants`` is given)."""
        if self.variants is None:
            return {"default": {"policy": self.policy, "params": dict(self.policy_params or {}),
                                "weight": 1.0}}
        return {name: {"policy": spec.get("policy", "lints"),
                       "params": dict(spec.get("params") or {}),
                       "weight": float(spec.get("weight", 1.0))}
                for name, spec in self.variants.items()}


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        words = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
        raise ValidationError(name, f"must be {words}", value)


def _check_variants(variants: object, policy_params: object) -> None:
    """The shape of ``variants`` (its policies are built, and checked, by the learners)."""
    if variants is None:
        return
    if policy_params is not None:
        raise ValidationError("policy_params", "give each variant's params in variants instead")
    if not isinstance(variants, Mapping) or not variants:
        raise ValidationError("variants", "must be a non-empty mapping of name to spec", variants)
    for name, spec in variants.items():
        where = f"variants.{name}"
        if not isinstance(name, str) or not name:
            raise ValidationError("variants", "names must be non-empty strings", name)
        if not isinstance(spec, Mapping):
            raise ValidationError(where, "must be a mapping with 'policy'", spec)
        check_policy_spec(spec, where, ("policy", "params", "weight"))
        check_number(f"{where}.weight", spec.get("weight", 1.0), low=0.0, strict=True)
