"""Service settings in Personalizer's terms: reward wait time, default reward, exploration
percentage, learning mode, log retention; read from ``serve.yaml`` (snake_case) and over
the API (Personalizer's camelCase ``ServiceConfiguration`` body)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass

from engine.checks import check_keys, is_number
from engine.errors import ValidationError

LEARNING_MODES = ("Online", "Apprentice", "Inference")
#: Keys of the settings body a client may send back but cannot set (ignored by ``PUT``).
READ_ONLY = ("lastConfigurationEditDate", "logRetentionEnforced")
#: Personalizer's wire names -> the fields of :class:`ServiceSettings`
WIRE_NAMES = {"rewardWaitTime": "reward_wait_time", "defaultReward": "default_reward",
              "explorationPercentage": "exploration_percentage",
              "learningMode": "learning_mode", "logRetentionDays": "log_retention_days",
              "rewardAggregation": "reward_aggregation"}
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


@dataclass(frozen=True)
class ServiceSettings:
    """One Personalizer-compatible service's settings, checked when built.

    Examples
    --------
    >>> s = ServiceSettings.from_wire({"rewardWaitTime": "PT10M", "learningMode": "Apprentice"})
    >>> s.reward_wait_time, s.learning_mode
    (600.0, 'Apprentice')
    >>> s.to_wire()["rewardWaitTime"]
    'PT10M'
    >>> ServiceSettings(learning_mode="Offline")
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: learningMode: must be one of ['Online', 'Apprentice', 'Inference'] (got 'Offline')
    """

    reward_wait_time: float = 600.0
    """Seconds a decision waits for its reward (Personalizer's ``rewardWaitTime``)."""
    default_reward: float = 0.0
    """Learned when no reward comes within the wait time."""
    exploration_percentage: float | None = None
    """Share of each decision's probability spread evenly over the actions (0 to 1);
    ``None``: the policy's own exploration only."""
    learning_mode: str = "Online"
    """``Online`` (explore and learn), ``Apprentice`` (return the application's baseline,
    learn from its rewards) or ``Inference`` (the policy's best, no exploring, no
    learning)."""
    log_retention_days: int | None = None
    """Days events, decisions and rewards are kept: older ones are deleted by the engine's
    retention schedule (:mod:`engine.privacy.retention`); ``None``: the engine's own
    ``retention_days``."""
    reward_aggregation: str = "earliest"
    """How repeated rewards of one event combine: ``earliest`` (the first counts) is the
    only one supported."""

    def __post_init__(self) -> None:
        _number("rewardWaitTime", self.reward_wait_time, 0.0, 366 * 86400.0)
        _number("defaultReward", self.default_reward, -1e6, 1e6)
        if self.exploration_percentage is not None:
            _number("explorationPercentage", self.exploration_percentage, 0.0, 1.0)
        if self.learning_mode not in LEARNING_MODES:
            raise ValidationError("learningMode", f"must be one of {list(LEARNING_MODES)}",
                                  self.learning_mode)
        days = self.log_retention_days
        if days is not None and (type(days) is not int or days < 1):
            raise ValidationError("logRetentionDays", "must be an integer >= 1 or null", days)
        if self.reward_aggregation != "earliest":
            raise ValidationError("rewardAggregation", "only 'earliest' is supported (the "
                                  "first reward of an event is learned)", self.reward_aggregation)

    @classmethod
    def from_mapping(cls, mapping: object, base: ServiceSettings | None = None,
                     where: str = "personalizer", also: tuple[str, ...] = ()) -> ServiceSettings:
        """Settings from a ``serve.yaml`` mapping (snake_case keys) over ``base``; ``also``:
        other keys the mapping may hold (named in the error about an unknown key)."""
        if not isinstance(mapping, Mapping):
            raise ValidationError(where, "must be a mapping of settings", mapping)
        check_keys(mapping, [*(f.name for f in dataclasses.fields(cls)), *also], where)
        try:
            return dataclasses.replace(base or cls(), **mapping)
        except ValidationError as err:
            snake = WIRE_NAMES.get(err.field, err.field)
            raise ValidationError(f"{where}.{snake}", err.reason, err.value) from None

    @classmethod
    def from_wire(cls, body: object, base: ServiceSettings | None = None) -> ServiceSettings:
        """Settings from a Personalizer ``ServiceConfiguration`` body over ``base`` (keys
        left out keep their values; ``lastConfigurationEditDate`` is read-only, ignored)."""
        if not isinstance(body, Mapping):
            raise ValidationError("body", "must be an object of settings", body)
        changes = {}
        for key, value in body.items():
            if key in READ_ONLY:
                continue
            if key not in WIRE_NAMES:
                raise ValidationError(key, f"unknown setting; allowed: {sorted(WIRE_NAMES)}")
            changes[WIRE_NAMES[key]] = parse_duration(value) if key == "rewardWaitTime" \
                else value
        return dataclasses.replace(base or cls(), **changes)

    def to_wire(self) -> dict:
        """The settings as Personalizer's ``ServiceConfiguration`` body."""
        return {**{wire: getattr(self, name) for wire, name in WIRE_NAMES.items()},
                "rewardWaitTime": format_duration(self.reward_wait_time),
                "logRetentionEnforced": True}  # logRetentionDays sets the engine's retention


def _number(field: str, value: object, low: float, high: float) -> None:
    if not (is_number(value) and low <= value <= high):
        raise ValidationError(field, f"must be a number from {low:g} to {high:g}", value)


def parse_duration(value: object) -> float:
    """Seconds of an ISO 8601 duration (``PT10M``, ``P1DT2H``, ``PT4.5S``).

    Examples
    --------
    >>> parse_duration("PT1H30M"), parse_duration("P1D")
    (5400.0, 86400.0)
    """
    m = _DURATION.match(value) if isinstance(value, str) and value not in ("P", "PT") \
        and not value.endswith("T") else None
    if m is None:
        raise ValidationError("rewardWaitTime", "must be an ISO 8601 duration such as "
                              "'PT10M' or 'P1DT2H'", value)
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: float) -> str:
    """An ISO 8601 duration of ``seconds`` (``PT10M``; ``PT0S`` for none).

    Examples
    --------
    >>> format_duration(600.0), format_duration(90061.5), format_duration(0)
    ('PT10M', 'P1DT1H1M1.5S', 'PT0S')
    """
    days, rest = divmod(float(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P" + (f"{int(days)}D" if days else "")
    time = (f"{int(hours)}H" if hours else "") + (f"{int(minutes)}M" if minutes else "") \
        + (f"{secs:g}S" if secs else "")
    if time or not days:
        out += "T" + (time or "0S")
    return out
