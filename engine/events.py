"""Behaviour events: the schema, the per-type weights and validation.

An event is what a user did at a point in *event time* (``ts``, seconds). Events feed
profiles; the write-ahead log stores them; replaying them rebuilds profiles exactly.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.checks import (
    MAX_ID_LENGTH,
    MAX_LIST_LENGTH,
    MAX_TEXT_LENGTH,
    MIN_WALL_TIME,
    check_string,
    check_strings,
    storable,
)
from engine.checks import is_number as _is_number
from engine.errors import ValidationError

#: Built-in event types and their interest weights (view < click < purchase; dislike < 0).
#: ``rate`` is scaled by its value (see :meth:`EventTypes.weight`); ``reward`` is the
#: value a decision's reward reported, so a rewarded recommendation counts like a click.
DEFAULT_WEIGHTS: dict[str, float] = {
    "view": 0.2, "click": 1.0, "purchase": 3.0, "rate": 1.0, "search": 0.5, "dislike": -2.0,
    "reward": 1.0, "session_end": 0.0,
}

#: Implicit-feedback targets for the latent-factor model (``None``: the type does not train
#: it; ``rate`` and ``reward`` derive theirs from the value, see EventTypes.implicit_target).
DEFAULT_IMPLICIT: dict[str, float | None] = {
    "view": 0.0, "click": 1.0, "purchase": 1.0, "rate": None, "search": None, "dislike": 0.0,
    "reward": None, "session_end": None,
}

__all__ = ["MAX_ID_LENGTH", "MAX_LIST_LENGTH", "MAX_TEXT_LENGTH", "Event", "EventTypes", "Limits",
           "validate_event", "validate_events"]


@dataclass(frozen=True)
class Limits:
    """The domain of the numbers an engine accepts: reward values and event times.

    Parameters
    ----------
    reward_range
        ``(low, high)`` of a reward, and of an event's ``value`` (ratings keep their own
        scale). A policy may clip further.
    min_event_time
        The earliest event time accepted, in seconds since 1970 (default 2000-01-01).
    max_event_lead
        How far ahead of the engine's clock an event time may lie, in seconds (a day by
        default: clocks disagree a little, milliseconds are a thousand times too far).

    Examples
    --------
    >>> lim = Limits()
    >>> lim.ts_bounds(1_700_000_000.0)
    (946684800.0, 1700086400.0)
    """

    reward_range: tuple[float, float] = (-1e6, 1e6)
    min_event_time: float = MIN_WALL_TIME
    max_event_lead: float = 86_400.0

    def __post_init__(self) -> None:
        low, high = self.reward_range
        if not (_is_number(low) and _is_number(high) and low <= high):
            raise ValidationError("reward_range", "must be (low, high) with finite low <= high",
                                  self.reward_range)
        for name in ("min_event_time", "max_event_lead"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValidationError(name, "must be a finite number >= 0", value)

    def ts_bounds(self, now: float | None) -> tuple[float, float]:
        """The window of event times accepted when the engine's clock reads ``now``."""
        high = _MAX_FLOAT if now is None else float(now) + self.max_event_lead
        return float(self.min_event_time), high

@dataclass(frozen=True)
class EventTypes:
    """Event types known to the engine, with their interest weights.

    Parameters
    ----------
    custom
        Extra event types mapped to their interest weight, e.g. ``{"share": 1.5}``.
    rating_scale
        ``(low, high)`` of ``rate`` events; a rating's weight is its position on that scale
        mapped to [-1, 1], times the ``rate`` weight.

    Examples
    --------
    >>> types = EventTypes(custom={"share": 1.5})
    >>> types.weight("click", None), types.weight("share", None)
    (1.0, 1.5)
    >>> types.weight("rate", 5.0), types.weight("rate", 1.0)
    (1.0, -1.0)
    """

    custom: Mapping[str, float] = field(default_factory=dict)
    rating_scale: tuple[float, float] = (1.0, 5.0)

    def __post_init__(self) -> None:
        for name, weight in self.custom.items():
            if not isinstance(name, str) or not name:
                raise ValidationError("event_types", "custom type names must be non-empty strings", name)
            if name in DEFAULT_WEIGHTS:
                raise ValidationError(f"event_types[{name!r}]", "is a built-in type and cannot be redefined")
            if not _is_number(weight):
                raise ValidationError(f"event_types[{name!r}]", "weight must be a finite number", weight)
        low, high = self.rating_scale
        if not (_is_number(low) and _is_number(high) and low < high):
            raise ValidationError("rating_scale", "must be (low, high) with low < high", self.rating_scale)
        object.__setattr__(self, "_weights", {**DEFAULT_WEIGHTS, **dict(self.custom)})

    def known(self, type_: str) -> bool:
        return type_ in self._weights  # type: ignore[attr-defined]

    def weight(self, type_: str, value: float | None) -> float:
        """Interest weight of one event of this type (and value, for ratings and rewards)."""
        base = self._weights[type_]  # type: ignore[attr-defined]
        if type_ == "rate":
            low, high = self.rating_scale
            return base * (2.0 * (value - low) / (high - low) - 1.0)
        if type_ == "reward":
            return base * value
        return base

    def implicit_target(self, type_: str, value: float | None) -> float | None:
        """Target in [0, 1] for the latent-factor model, or ``None`` when this event does not train it."""
        if type_ == "rate":
            low, high = self.rating_scale
            return min(1.0, max(0.0, (value - low) / (high - low)))
        if type_ == "reward":
            return min(1.0, max(0.0, value))
        if type_ in DEFAULT_IMPLICIT:
            return DEFAULT_IMPLICIT[type_]
        return 1.0 if self._weights[type_] > 0 else 0.0  # type: ignore[attr-defined]


@dataclass(slots=True, eq=False, repr=False)
class Event:
    """One validated behaviour event. Build it with :func:`validate_event`.

    Examples
    --------
    >>> e = validate_event({"user_id": "u1", "type": "click", "ts": 10.0, "item_id": "i9",
    ...                     "topics": ["jazz"]})
    >>> e.user_id, e.type, e.ts, e.item_id, e.topics
    ('u1', 'click', 10.0, 'i9', ('jazz',))
    >>> e.to_dict()["topics"]
    ['jazz']
    """

    user_id: str
    type: str
    ts: float
    item_id: str | None = None
    value: float | None = None
    topics: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    text: str | None = None
    attributes: dict | None = None
    event_id: str | None = None

    def to_dict(self) -> dict:
        """The event as a plain JSON-ready dict (empty optional fields left out)."""
        out: dict = {"user_id": self.user_id, "type": self.type, "ts": self.ts}
        for name in ("item_id", "value", "text", "event_id"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        if self.topics:
            out["topics"] = list(self.topics)
        if self.tags:
            out["tags"] = list(self.tags)
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Event({self.to_dict()!r})"

    def __reduce__(self):
        return (Event, tuple(getattr(self, s) for s in Event.__slots__))


_FIELDS = frozenset(Event.__slots__)

#: Event ids of the events the engine derives from rewards (``reward:<decision_id>``); an
#: ingested event may not take one (a replay would miss that reward).
RESERVED_EVENT_ID_PREFIX = "reward:"

_VALUED_TYPES = frozenset(("rate", "reward"))  # types whose events must carry a value
_MAX_FLOAT = sys.float_info.max


def validate_event(raw: Mapping | Event, types: EventTypes | None = None,
                   where: str = "event", limits: Limits | None = None,
                   now: float | None = None) -> Event:
    """Check one event and return it as an :class:`Event`.

    A bad field raises :class:`~engine.errors.ValidationError` naming it after ``where``.
    ``ts`` must lie in ``limits.ts_bounds(now)``, ``value`` in ``limits.reward_range`` (no
    ``limits``: any finite time >= 0 and value).

    Examples
    --------
    >>> validate_event({"user_id": "u1", "type": "teleport", "ts": 1.0})
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: event.type: unknown event type; use one of ['click', 'dislike', 'purchase', 'rate', 'reward', 'search', 'session_end', 'view'] or declare it in event_types (got 'teleport')
    """
    return _validate(raw, types or _DEFAULT_TYPES, where, *_bounds(limits, now))


def validate_events(raws: Iterable[Mapping | Event], types: EventTypes | None = None,
                    limits: Limits | None = None, now: float | None = None) -> list[Event]:
    """Validate a batch; the first bad event raises, naming its index (``events[i].field``).
    ``limits`` and ``now`` as in :func:`validate_event`."""
    if isinstance(raws, (str, bytes, Mapping)):
        raise ValidationError("events", "must be a list of events", raws)
    types = types or _DEFAULT_TYPES
    ts_bounds, values = _bounds(limits, now)
    if type(raws) is not list:
        raws = list(raws)  # (walked twice when an event is bad)
    try:
        return [_validate(r, types, "", ts_bounds, values) for r in raws]
    except ValidationError:  # the first bad event again, its error naming its index
        for i, r in enumerate(raws):
            _validate(r, types, f"events[{i}]", ts_bounds, values)
        raise


def _validate(raw: Mapping | Event, types: EventTypes, where: str,
              ts_bounds: tuple[float, float], values: tuple[float, float]) -> Event:
    """:func:`validate_event` with its bounds worked out. Each field gets a quick test that
    plain input passes; what fails it gets the field's full check, which raises naming the
    field or accepts it (an int time, a str subclass). The first problem, in field order, is
    the one named."""
    if type(raw) is not dict:
        if isinstance(raw, Event):
            raw = raw.to_dict()
        if not isinstance(raw, Mapping):
            raise ValidationError(where, "must be a mapping of field names to values", raw)
    if not raw.keys() <= _FIELDS:
        unknown = raw.keys() - _FIELDS
        raise ValidationError(f"{where}.{sorted(unknown)[0]}",
                              f"unknown field; allowed fields are {sorted(_FIELDS)}")
    get = raw.get
    user_id = get("user_id")
    if not storable(user_id):
        check_string(user_id, f"{where}.user_id")
    type_ = get("type")
    weights = types._weights  # type: ignore[attr-defined]
    if not isinstance(type_, str) or type_ not in weights:
        known = sorted(weights)
        raise ValidationError(f"{where}.type",
                              f"unknown event type; use one of {known} or declare it in event_types",
                              type_)
    ts = get("ts")
    if type(ts) is not float or not ts_bounds[0] <= ts <= ts_bounds[1]:  # NaN fails too
        ts = _checked_ts(ts, ts_bounds, f"{where}.ts")
    item_id = get("item_id")
    if item_id is not None and not storable(item_id):
        check_string(item_id, f"{where}.item_id")
    value = get("value")
    if value is not None and (type(value) is not float or type_ == "rate"
                              or not values[0] <= value <= values[1]):
        value = _checked_value(value, type_, values, f"{where}.value")
    text, attributes = get("text"), get("attributes")
    if type_ in _VALUED_TYPES:
        if value is None:
            raise ValidationError(f"{where}.value", f"is required for '{type_}' events")
        low, high = types.rating_scale
        if type_ == "rate" and not low <= value <= high:
            raise ValidationError(f"{where}.value", f"rating must lie in [{low}, {high}]", value)
    if text is not None:
        check_string(text, f"{where}.text", max_length=MAX_TEXT_LENGTH, allow_empty=True)
    if type_ == "search" and not text:
        raise ValidationError(f"{where}.text", "is required for 'search' events")
    if attributes is not None:
        attributes = _checked_attributes(attributes, f"{where}.attributes")
    topics, tags, event_id = get("topics"), get("tags"), get("event_id")
    topics = () if topics is None else tuple(topics) if _ok_strings(topics) \
        else check_strings(topics, f"{where}.topics")
    tags = () if tags is None else tuple(tags) if _ok_strings(tags) \
        else check_strings(tags, f"{where}.tags")
    if event_id is not None and (not storable(event_id)
                                 or event_id.startswith(RESERVED_EVENT_ID_PREFIX)):
        check_string(event_id, f"{where}.event_id")
        if event_id.startswith(RESERVED_EVENT_ID_PREFIX):
            raise ValidationError(f"{where}.event_id", f"must not start with "
                                  f"{RESERVED_EVENT_ID_PREFIX!r}, which is reserved for the "
                                  "engine's reward events", event_id)
    return Event(user_id, type_, ts, item_id, value, topics, tags, text, attributes or None,
                 event_id)


def _checked_ts(ts: object, bounds: tuple[float, float], where: str) -> float:
    """``ts`` as a float in ``bounds``, or the error that says why it is not."""
    if not _is_number(ts) or ts < 0:
        raise ValidationError(where, "must be a finite number of seconds >= 0", ts)
    low, high = bounds
    if ts < low:
        raise ValidationError(where, f"must be at or after {low:.0f} (event time in seconds "
                              "since 1970; see min_event_time)", ts)
    if ts > high:
        hint = "; it looks like milliseconds: send seconds" if low <= ts / 1000 <= high else ""
        raise ValidationError(where, f"must be at most {high:.0f}, a day after the engine's "
                              f"clock (event time in seconds since 1970; see max_event_lead)"
                              f"{hint}", ts)
    return float(ts)


def _checked_value(value: object, type_: str, values: tuple[float, float], where: str) -> float:
    """An event's ``value`` as a float: in the reward range, or a rating (checked later)."""
    if not _is_number(value):
        raise ValidationError(where, "must be a finite number", value)
    value = float(value)
    if type_ != "rate" and not values[0] <= value <= values[1]:
        raise ValidationError(where, f"must lie in the reward range "
                              f"[{values[0]:g}, {values[1]:g}]", value)
    return value


def _checked_attributes(attributes: object, where: str) -> dict:
    if not isinstance(attributes, Mapping):
        raise ValidationError(where, "must be a mapping", attributes)
    if len(attributes) > MAX_LIST_LENGTH:
        raise ValidationError(where, f"must hold at most {MAX_LIST_LENGTH} entries",
                              len(attributes))
    for k, v in attributes.items():
        if not isinstance(k, str) or not k:
            raise ValidationError(where, "keys must be non-empty strings", k)
        check_string(k, where, max_length=MAX_ID_LENGTH)
        if isinstance(v, str):
            check_string(v, f"{where}.{k}", max_length=MAX_ID_LENGTH)
        elif not (isinstance(v, bool) or _is_number(v)):
            raise ValidationError(f"{where}.{k}", "must be a string, a boolean or a finite number",
                                  v)
    return dict(attributes)


def _bounds(limits: Limits | None, now: float | None
            ) -> tuple[tuple[float, float], tuple[float, float]]:
    """(ts bounds, value bounds) of ``limits`` at ``now``; ``None``: every finite number."""
    if limits is None:
        return (0.0, _MAX_FLOAT), (-_MAX_FLOAT, _MAX_FLOAT)
    return limits.ts_bounds(now), limits.reward_range


def _ok_strings(value: object) -> bool:
    """Whether ``value`` is a list or tuple of storable strings (``check_strings`` passes)."""
    return (type(value) is list or type(value) is tuple) and len(value) <= MAX_LIST_LENGTH \
        and all(map(storable, value))


_DEFAULT_TYPES = EventTypes()
