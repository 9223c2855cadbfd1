"""Event validation: every malformed event names its field; good events round-trip."""

from __future__ import annotations

import pytest

from engine.errors import ValidationError
from engine.events import EventTypes, validate_event, validate_events

GOOD = {"user_id": "u1", "type": "click", "ts": 5.0, "item_id": "i1", "topics": ["a"],
        "tags": ["t"], "text": "hello", "attributes": {"region": "eu", "age": 30},
        "event_id": "e1"}


@pytest.mark.parametrize(("patch", "field", "reason"), [
    ({"user_id": None}, "event.user_id", "is required"),
    ({"user_id": ""}, "event.user_id", "non-empty string"),
    ({"user_id": 7}, "event.user_id", "non-empty string"),
    ({"user_id": "x" * 300}, "event.user_id", "at most 256"),
    ({"type": "teleport"}, "event.type", "unknown event type"),
    ({"type": None}, "event.type", "unknown event type"),
    ({"ts": "yesterday"}, "event.ts", "finite number"),
    ({"ts": float("nan")}, "event.ts", "finite number"),
    ({"ts": -1.0}, "event.ts", ">= 0"),
    ({"ts": True}, "event.ts", "finite number"),
    ({"item_id": ""}, "event.item_id", "non-empty string"),
    ({"value": "high"}, "event.value", "finite number"),
    ({"topics": "jazz"}, "event.topics", "list of strings"),
    ({"topics": ["ok", 3]}, "event.topics[1]", "non-empty string"),
    ({"tags": [""]}, "event.tags[0]", "non-empty string"),
    ({"text": 12}, "event.text", "must be a string"),
    ({"attributes": ["eu"]}, "event.attributes", "mapping"),
    ({"attributes": {"region": [1]}}, "event.attributes.region", "string, a boolean or a finite"),
    ({"event_id": 5}, "event.event_id", "non-empty string"),
    ({"colour": "red"}, "event.colour", "unknown field"),
    ({"type": "rate", "value": None}, "event.value", "is required for 'rate'"),
    ({"type": "rate", "value": 9.0}, "event.value", "rating must lie in [1.0, 5.0]"),
    ({"type": "reward", "value": None}, "event.value", "is required for 'reward'"),
    ({"type": "search", "text": None}, "event.text", "is required for 'search'"),
])
def test_bad_events_name_the_field(patch, field, reason):
    raw = {**GOOD, **patch}
    raw = {k: v for k, v in raw.items() if v is not None or k in ("user_id", "type")}
    with pytest.raises(ValidationError) as info:
        validate_event(raw)
    assert info.value.field == field
    assert reason in str(info.value)


def test_batch_errors_name_the_index():
    with pytest.raises(ValidationError, match=r"^events\[1\]\.ts"):
        validate_events([GOOD, {**GOOD, "ts": None}])
    with pytest.raises(ValidationError, match="^events: must be a list"):
        validate_events({"user_id": "u"})


def test_round_trip_and_custom_types():
    e = validate_event(GOOD)
    assert validate_event(e.to_dict()) == e
    assert e.topics == ("a",) and e.attributes == {"region": "eu", "age": 30}
    types = EventTypes(custom={"share": 2.0})
    assert validate_event({**GOOD, "type": "share"}, types).type == "share"
    with pytest.raises(ValidationError, match="built-in"):
        EventTypes(custom={"click": 3.0})
