"""Event validation: every malformed event names its field; good events round-trip."""

from __future__ import annotations

import pytest

from engine.errors import ValidationError
from engine.events import EventTypes, Limits, validate_event, validate_events

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
    ({"event_id": "reward:abc"}, "event.event_id", "reserved for the engine's reward events"),
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


def test_a_reserved_event_id_is_refused_and_the_rewards_log_row_kept(tmp_path):
    # an ingested event taking a reward event's id would displace that reward's row in the
    # log (its unique index ignores the later insert): a replay would then miss the reward
    from engine import Engine

    eng = Engine(tmp_path, policy="uniform", item_features=0, clock=lambda: 5.0)
    d = eng.rank("u1", ["a", "b"])
    plain = {"user_id": "u1", "type": "view", "ts": 1.0}  # the fast path's kind of event
    with pytest.raises(ValidationError, match=r"^events\[1\]\.event_id: must not start"):
        eng.ingest([{**plain, "event_id": "ok"}, {**plain, "event_id": f"reward:{d.decision_id}"}])
    assert eng.store.count_events() == 0  # all or nothing
    assert eng.reward(d.decision_id, 1.0).status == "joined"
    rows = eng.store.db.execute("SELECT event_id FROM events WHERE type = 'reward'").fetchall()
    assert rows == [(f"reward:{d.decision_id}",)]
    eng.close()


def test_batch_errors_name_the_index():
    with pytest.raises(ValidationError, match=r"^events\[1\]\.ts"):
        validate_events([GOOD, {**GOOD, "ts": None}])
    with pytest.raises(ValidationError, match=r"^events\[2\]\.user_id"):  # any iterable
        validate_events(e for e in [GOOD, GOOD, {**GOOD, "user_id": ""}])
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


# ---- known answers of the one validator: what each accepted event becomes -----------------

_LIMITS = Limits(reward_range=(-10.0, 10.0), min_event_time=1.0, max_event_lead=2.0)
_PLAIN = {"user_id": "u1", "type": "click", "ts": 3.0}


class _Id(str):
    pass


@pytest.mark.parametrize(("patch", "expected"), [
    ({}, {"user_id": "u1", "type": "click", "ts": 3.0}),
    ({"ts": 3}, {"user_id": "u1", "type": "click", "ts": 3.0}),  # an int time: a float
    ({"value": 2}, {"user_id": "u1", "type": "click", "ts": 3.0, "value": 2.0}),
    ({"topics": ("a", "b"), "tags": []}, {"user_id": "u1", "type": "click", "ts": 3.0,
                                          "topics": ["a", "b"]}),
    ({"attributes": {}}, {"user_id": "u1", "type": "click", "ts": 3.0}),  # empty: none
    ({"user_id": _Id("u9"), "item_id": "caf\u00e9"}, {"user_id": "u9", "type": "click",
                                                      "ts": 3.0, "item_id": "caf\u00e9"}),
    ({"type": "rate", "value": 5}, {"user_id": "u1", "type": "rate", "ts": 3.0, "value": 5.0}),
    ({"type": "rate", "value": 40.0}, None),  # a rating keeps its own scale, not the rewards'
    ({"type": "search", "text": "jazz"}, {"user_id": "u1", "type": "search", "ts": 3.0,
                                          "text": "jazz"}),
    ({"event_id": "rewards:1"}, {"user_id": "u1", "type": "click", "ts": 3.0,
                                 "event_id": "rewards:1"}),
])
def test_the_validator_gives_known_events(patch, expected):
    raw = {**_PLAIN, **patch}
    if expected is None:
        with pytest.raises(ValidationError, match=r"^event\.value: rating must lie in \[1\.0, 5\.0\]"):
            validate_event(raw, limits=_LIMITS, now=5.0)
        return
    for event in (validate_event(raw, limits=_LIMITS, now=5.0),
                  validate_events([raw], limits=_LIMITS, now=5.0)[0]):
        assert event.to_dict() == expected
        assert type(event.ts) is float and (event.value is None or type(event.value) is float)
        assert type(event.topics) is tuple and type(event.tags) is tuple


@pytest.mark.parametrize(("patch", "message"), [
    ({"ts": 0.5}, "events[0].ts: must be at or after 1 (event time in seconds since 1970; "
                  "see min_event_time) (got 0.5)"),
    ({"ts": 7.5}, "events[0].ts: must be at most 7, a day after the engine's clock (event time "
                  "in seconds since 1970; see max_event_lead) (got 7.5)"),
    ({"ts": 5000}, "events[0].ts: must be at most 7, a day after the engine's clock (event time "
                   "in seconds since 1970; see max_event_lead); it looks like milliseconds: "
                   "send seconds (got 5000)"),
    ({"ts": 10**400}, "events[0].ts: must be a finite number of seconds >= 0 (got 1000000000"),
    ({"ts": True}, "events[0].ts: must be a finite number of seconds >= 0 (got True)"),
    ({"value": 11.0}, "events[0].value: must lie in the reward range [-10, 10] (got 11.0)"),
    ({"value": True}, "events[0].value: must be a finite number (got True)"),
    ({"type": "reward"}, "events[0].value: is required for 'reward' events"),
    ({"topics": ""}, "events[0].topics: must be a list of strings (got '')"),
    ({"tags": 0}, "events[0].tags: must be a list of strings (got 0)"),
    ({"topics": ["a", "\x00"]}, "events[0].topics[1]: must not contain NUL characters"),
    ({"user_id": "\ud83d"}, "events[0].user_id: must be valid Unicode"),
    ({"event_id": "reward:d1"}, "events[0].event_id: must not start with 'reward:', which is "
                                "reserved for the engine's reward events (got 'reward:d1')"),
    ({"type": "search", "text": 3, "colour": 1}, "events[0].colour: unknown field"),
    ({"type": "search", "value": "x", "text": 3}, "events[0].value: must be a finite number"),
    ({"type": "rate", "value": 9, "text": 3}, "events[0].value: rating must lie in [1.0, 5.0]"),
    ({"type": "search", "text": 3}, "events[0].text: must be a string (got 3)"),
])
def test_the_validator_names_the_first_problem_in_field_order(patch, message):
    with pytest.raises(ValidationError) as info:
        validate_events([_PLAIN, {**_PLAIN, **patch}], limits=_LIMITS, now=5.0)
    assert str(info.value).replace("events[1]", "events[0]").startswith(message)
    assert info.value.field.startswith("events[1]")
