"""Event validation: every malformed event names its field; good events round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ValidationError
from engine.events import (
    _DEFAULT_TYPES,
    EventTypes,
    Limits,
    _bounds,
    _fast_event,
    validate_event,
    validate_events,
)

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


# ---- the fast path of validate_events accepts exactly what validate_event accepts ----------

_odd_text = st.text(st.sampled_from(["a", "é", "\ud83d", "\x00", "\ufeff"]), max_size=3)
_values = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**400), max_value=10**400),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3), _odd_text,
                    st.lists(st.text(max_size=2), max_size=3),
                    st.tuples(st.text(max_size=2)), st.dictionaries(st.text(max_size=2),
                                                                    st.integers(), max_size=2))
_fields = st.sampled_from(["user_id", "type", "ts", "item_id", "value", "topics", "tags", "text",
                           "attributes", "event_id", "colour"])
_types = st.sampled_from(["view", "click", "purchase", "rate", "reward", "search", "dislike",
                          "teleport", ""])


_LIMITS = Limits(reward_range=(-10.0, 10.0), min_event_time=1.0, max_event_lead=2.0)


@settings(max_examples=400, deadline=None)
@given(base=st.fixed_dictionaries({"user_id": st.sampled_from(["u1", "", "x" * 257]),
                                   "type": _types, "ts": _values}),
       extra=st.dictionaries(_fields, _values, max_size=4))
def test_fast_path_agrees_with_the_full_validator(base, extra):
    raw = {**base, **extra}
    fast = _fast_event(raw, _DEFAULT_TYPES._weights, *_bounds(_LIMITS, 5.0))
    try:
        full = validate_event(raw, limits=_LIMITS, now=5.0)
    except ValidationError:
        full = None
    if fast is not None:  # whatever the fast path accepts, the validator accepts alike
        assert full is not None and fast == full and fast.ts == full.ts
        assert type(fast.ts) is float and (fast.value is None or type(fast.value) is float)


def test_fast_path_takes_the_common_event_and_leaves_the_rest():
    weights = _DEFAULT_TYPES._weights
    common = {"user_id": "u1", "type": "click", "ts": 3, "item_id": "i1", "topics": ["a"],
              "event_id": "e1", "value": 2}
    bounds = _bounds(None, None)
    assert _fast_event(common, weights, *bounds) == validate_event(common)
    for special in ({"type": "rate", "value": 3.0}, {"text": "jazz"}, {"ts": True},
                    {"attributes": {"age": 3}}, {"ts": 10**400}, {"topics": "a"}):
        assert _fast_event({**common, **special}, weights, *bounds) is None, special
    with pytest.raises(ValidationError, match=r"^events\[0\]\.ts: must be a finite number"):
        validate_events([{**common, "ts": 10**400}])
