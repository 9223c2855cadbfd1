"""Nothing a client sends can break the store: the domain checked at the boundary, random
decision ids, private files, and quarantine for a record that cannot be written."""

from __future__ import annotations

import os
import pickle
import stat

import pytest

from engine import Engine
from engine.errors import ValidationError
from engine.groupcommit import JOURNAL_NAME
from engine.journal import Journal

LONE = "\ud83d"  # half of a UTF-16 pair: what a client sends when it cuts inside an emoji
NOW = 1_700_000_000.0


def make(data, **kw):
    kw.setdefault("clock", lambda: NOW)
    kw.setdefault("min_event_time", None)
    return Engine(data, policy="lints", item_features=2, context_features=["mobile"], seed=0,
                  **kw)


def event(**over):
    return {"user_id": "u1", "type": "click", "ts": NOW - 10, "item_id": "i1",
            "topics": ["jazz"], **over}


def cands(**over):
    return [{"id": "a", "topics": ["jazz"], "features": [1.0, 0.0], **over},
            {"id": "b", "topics": ["rock"], "features": [0.0, 1.0]}]


BAD_EVENTS = [
    (event(user_id=LONE), "events[0].user_id", "valid Unicode"),
    (event(item_id="x" + LONE), "events[0].item_id", "valid Unicode"),
    (event(event_id=LONE), "events[0].event_id", "valid Unicode"),
    (event(topics=["ok", LONE]), "events[0].topics[1]", "valid Unicode"),
    (event(tags=[LONE]), "events[0].tags[0]", "valid Unicode"),
    (event(attributes={"region": LONE}), "events[0].attributes.region", "valid Unicode"),
    (event(attributes={LONE: "eu"}), "events[0].attributes", "valid Unicode"),
    (event(type="search", text="jazz " + LONE), "events[0].text", "valid Unicode"),
    (event(user_id="u\x00"), "events[0].user_id", "NUL"),
    (event(topics=["t" * 257]), "events[0].topics[0]", "at most 256 characters"),
    (event(ts=NOW * 1000), "events[0].ts", "looks like milliseconds"),
    (event(ts=1e308), "events[0].ts", "a day after the engine's clock"),
    (event(ts=NOW + 2 * 86_400), "events[0].ts", "a day after the engine's clock"),
    (event(type="reward", value=1e308), "events[0].value", "reward range"),
    (event(value=-2e6), "events[0].value", "reward range"),
]


@pytest.mark.parametrize(("raw", "field", "reason"), BAD_EVENTS)
def test_an_event_outside_the_domain_is_refused_naming_the_field(tmp_path, raw, field, reason):
    eng = make(tmp_path / "d")
    good = event(user_id="u2", event_id="first")
    with pytest.raises(ValidationError) as err:
        eng.ingest([good, raw])
    assert err.value.field == field.replace("[0]", "[1]", 1) and reason in str(err.value)
    str(err.value).encode("utf-8")  # the message itself can be sent back over HTTP
    assert eng.stats()["events"] == 0  # nothing of the batch is stored
    eng.close()


def test_wall_clock_engines_refuse_times_before_2000_and_simulations_need_not(tmp_path):
    eng = Engine(tmp_path / "wall", item_features=2)
    with pytest.raises(ValidationError, match=r"events\[0\]\.ts: must be at or after 946684800"):
        eng.ingest([event(ts=5.0)])
    eng.close()
    eng = Engine(tmp_path / "sim", item_features=2, clock=lambda: 100.0)  # a clock of its own
    assert eng.ingest([event(ts=5.0)]).accepted == 1
    eng.close()
    eng = Engine(tmp_path / "set", item_features=2, clock=lambda: 100.0, min_event_time=50.0)
    with pytest.raises(ValidationError, match="at or after 50"):
        eng.ingest([event(ts=5.0)])
    eng.close()


BAD_RANKS = [
    (dict(candidates=cands(topics=[LONE])), "requests[0].candidates[0].topics[0]"),
    (dict(candidates=cands(tags=["x", LONE])), "requests[0].candidates[0].tags[1]"),
    (dict(candidates=cands(id=LONE)), "requests[0].candidates[0].id"),
    (dict(candidates=cands(id="a\x00")), "requests[0].candidates[0].id"),
    (dict(user_id=LONE), "requests[0].user_id"),
    (dict(decision_id="d" + LONE), "requests[0].decision_id"),
    (dict(context={LONE: 1.0}), "requests[0].context.\\ud83d"),
]


@pytest.mark.parametrize(("over", "field"), BAD_RANKS)
def test_a_rank_request_outside_the_domain_is_refused(tmp_path, over, field):
    eng = make(tmp_path / "d")
    args = {"user_id": "u1", "candidates": cands(), "context": None, "decision_id": None, **over}
    with pytest.raises(ValidationError) as err:
        eng.rank(args["user_id"], args["candidates"], args["context"],
                 decision_id=args["decision_id"])
    assert err.value.field == field
    str(err.value).encode("utf-8")
    d = eng.rank("u1", cands())  # the engine goes on
    assert eng.reward(d.decision_id, 1.0).status == "joined"
    eng.close()
    eng = make(tmp_path / "d")  # and the directory reopens with the decision in it
    assert eng.health()["status"] == "ok" and eng.store.decision(d.decision_id) is not None
    eng.close()


def test_rewards_outside_the_configured_range_are_refused(tmp_path):
    eng = make(tmp_path / "d", reward_range=(0.0, 1.0))
    d = eng.rank("u1", cands())
    for bad in (1e308, 1.5, -0.1):
        with pytest.raises(ValidationError, match=r"^value: must lie in \[0.0, 1.0\]"):
            eng.reward(d.decision_id, bad)
    with pytest.raises(ValidationError, match=r"rewards\[1\]\.value: must lie in"):
        eng.reward_batch([(d.decision_id, 1.0), (d.decision_id, 2.0)])
    assert eng.reward(d.decision_id, 1.0).status == "joined"  # nothing was recorded before
    eng.close()
    with pytest.raises(ValidationError, match="default_reward: must lie in"):
        make(tmp_path / "e", reward_range=(0.0, 1.0), default_reward=-1.0)
    with pytest.raises(ValidationError, match="reward_range"):
        make(tmp_path / "f", reward_range=(1.0, 0.0))


def test_decision_ids_carry_128_random_bits(tmp_path):
    eng = make(tmp_path / "d")
    ids = [eng.rank("u1", cands()).decision_id for _ in range(200)]
    eng.close()
    assert len(set(ids)) == 200 and all(len(i) == 44 for i in ids)
    assert all(int(i, 16) >= 0 for i in ids)  # hexadecimal: 12 digits of time, 32 random
    # the time prefix never goes back: new ids extend the decision log's index at its end
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)
    # the random part has no shared prefix or counter: neighbours differ in its leading
    # digits as often as independent draws do (a counter or a per-run prefix would share them)
    same_lead = sum(a[12:16] == b[12:16] for a, b in zip(ids, ids[1:], strict=False))
    assert same_lead <= 2


def test_the_data_directory_and_its_files_are_private(tmp_path):
    data = tmp_path / "d"
    eng = make(data)
    for i in range(300):  # enough group commits to start the writer process and its lock
        d = eng.rank(f"u{i}", cands())
        eng.reward(d.decision_id, 1.0)
    eng.store.flush()
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    files = sorted(os.listdir(data))
    assert {"loopwise.sqlite", "loopwise.sqlite-wal", "journal", "LOCK"} <= set(files)
    for name in files:
        assert stat.S_IMODE(os.stat(data / name).st_mode) == 0o600, name
    eng.close()
    os.chmod(data, 0o755)  # made readable by someone else: private again at the next open
    os.chmod(data / "loopwise.sqlite", 0o644)
    make(data).close()
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data / "loopwise.sqlite").st_mode) == 0o600


def _event_row(seq, user_id, topic):
    return (seq, f"e{seq}", user_id, 0, "click", NOW - 5, "i1", None, "\x1f" + topic)


def test_a_record_that_cannot_be_written_is_quarantined_and_the_rest_committed(tmp_path):
    data = tmp_path / "d"
    make(data).close()  # a directory with its schema
    journal = Journal(data / JOURNAL_NAME)
    journal.append(pickle.dumps([("events", [_event_row(1, "u1", "jazz")])]))
    journal.append(pickle.dumps([("events", [_event_row(2, "u2", LONE)])]))  # cannot be stored
    journal.append(b"not a pickle")  # cannot be read
    journal.append(pickle.dumps([("events", [_event_row(3, "u3", "rock")])]))
    journal.close()

    eng = make(data)  # reopening replays the journal: it does not die on the bad records
    assert eng.store.count_events() == 2
    assert "topic:jazz" in eng.profile("u1")["interests"]
    assert "topic:rock" in eng.profile("u3")["interests"] and eng.profile("u2") is None
    health = eng.health()
    assert health["status"] == "degraded" and health["quarantined"] == 2
    assert eng.stats()["quarantined"] == 2
    q = eng.quarantine()
    reasons = sorted(r["reason"] for r in q["records"])
    assert reasons[0].startswith("UnicodeEncodeError") and "unreadable" in reasons[1]
    assert any("\\ud83d" in r["record"] for r in q["records"])
    for r in q["records"]:
        r["record"].encode("ascii")  # readable text, whatever the record held
    # the store goes on: new writes land, and a restart keeps all of it
    d = eng.rank("u1", cands())
    eng.reward(d.decision_id, 1.0)
    eng.close()
    eng = make(data)
    assert eng.store.count_events() == 3 and eng.health()["quarantined"] == 2
    assert eng.quarantine(release=True)["released"] == 2
    assert eng.health() == {"status": "ok", "quarantined": 0, "reason": None}
    eng.close()


@pytest.mark.parametrize("writer", [True, False])
def test_a_bad_record_in_a_running_engine_does_not_block_group_commits(tmp_path, monkeypatch,
                                                                       writer):
    monkeypatch.setenv("LOOPWISE_WRITER", "1" if writer else "0")
    data = tmp_path / "d"
    eng = make(data)
    decisions = []
    for i in range(600):  # group commits of 256 calls, in the writer process or not
        if i == 100:  # a record the boundary would refuse, slipped past it
            eng.store._commits.append([("events", [_event_row(10**6, LONE, "x")])])
        d = eng.rank(f"u{i % 9}", cands())
        eng.reward(d.decision_id, 1.0)
        decisions.append(d.decision_id)
    assert eng.health()["status"] == "degraded"
    n = eng.store.db.execute("SELECT COUNT(*) FROM decisions WHERE status = 'joined'").fetchone()
    assert n[0] == 600
    eng.close()
    eng = make(data)
    assert all(eng.store.decision(d)["status"] == "joined" for d in decisions[::50])
    assert eng.health()["quarantined"] == 1
    eng.close()


def test_forget_removes_the_users_quarantined_records(tmp_path):
    data = tmp_path / "d"
    make(data).close()
    journal = Journal(data / JOURNAL_NAME)
    journal.append(pickle.dumps([("events", [_event_row(1, "secret-user", LONE)])]))
    journal.append(pickle.dumps([("events", [_event_row(2, "other", LONE)])]))
    journal.close()
    eng = make(data)
    assert eng.forget("secret-user")["quarantine"] == 1
    assert eng.health()["quarantined"] == 1
    eng.close()
