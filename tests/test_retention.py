"""Retention (engine.privacy.retention): rows older than retention_days leave every file at
the next run of the schedule and at open (checked by unique ids in every byte of every
file), newer rows stay, profiles keep their aggregates, and the engine decides exactly as
an engine that keeps everything."""

from __future__ import annotations

from pathlib import Path

import pytest
from filebytes import holding

from engine import Engine
from engine.errors import ValidationError
from engine.privacy.retention import DAY
from engine.storeview import StoreView

CANDS = [{"id": "item-a", "topics": ["jazz"], "features": [1.0, 0.0]},
         {"id": "item-b", "topics": ["rock"], "features": [0.0, 1.0]}]
USERS = [f"u{i}" for i in range(6)]


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _engine(data: Path, clock: Clock, **kw) -> Engine:
    return Engine(str(data), policy="lints", item_features=2, seed=5, clock=clock,
                  wait_window=600.0, **kw)


def _round(eng: Engine, tag: str, t: float, users=USERS) -> list:
    """Events, decisions (ids of our own) and rewards, every id starting with ``tag``."""
    eng.ingest([{"user_id": u, "type": "click", "ts": t + i, "item_id": "item-a",
                 "topics": ["jazz"], "event_id": f"{tag}-evt-{u}"} for i, u in enumerate(users)])
    out = []
    for u in users:
        d = eng.rank(u, CANDS, decision_id=f"{tag}-dec-{u}")
        if u != users[-1]:  # the last one gets the default reward when its window closes
            eng.reward(d.decision_id, 1.0 if d.chosen == "item-a" else 0.0)
        out.append((d.chosen, d.probabilities))
    return out


def test_old_rows_leave_every_file_and_decisions_do_not_change(tmp_path):
    kept, kept_clock = tmp_path / "kept", Clock(10 * DAY)
    short, short_clock = tmp_path / "short", Clock(10 * DAY)
    a = _engine(short, short_clock, retention_days=1.0)
    b = _engine(kept, kept_clock)
    assert _round(a, "old", 10 * DAY - 100) == _round(b, "old", 10 * DAY - 100)
    short_clock.t = kept_clock.t = 12 * DAY  # two days on: the old round is out of the window
    assert _round(a, "new", 12 * DAY - 100) == _round(b, "new", 12 * DAY - 100)
    for needle in (b"old-evt-", b"old-dec-"):
        assert holding(short, needle) == [], needle  # the schedule ran on the first call
        assert holding(kept, needle)
    for needle in (b"new-evt-", b"new-dec-"):
        assert holding(short, needle)
    counts = a.store.db.execute("SELECT (SELECT COUNT(*) FROM events), "
                                "(SELECT COUNT(*) FROM decisions)").fetchone()
    assert counts == (len(USERS) + len(USERS) - 1, len(USERS))  # clicks + reward events
    assert a.profile("u0")["engagement"]["events"] == b.profile("u0")["engagement"]["events"]
    assert a.profile("u0")["interests"] == b.profile("u0")["interests"]
    # later decisions: the same for everyone, as with the whole log
    short_clock.t = kept_clock.t = 12 * DAY + 10
    assert _round(a, "more", 12 * DAY) == _round(b, "more", 12 * DAY)
    assert a.ab_report is not None and a.store.get_meta("retained_since") is not None
    a.close()
    b.close()
    assert holding(short, b"old-evt-") == [] and holding(short, b"old-dec-") == []


def test_rows_that_aged_out_while_closed_go_at_open(tmp_path):
    clock = Clock(10 * DAY)
    eng = _engine(tmp_path / "d", clock, retention_days=1.0)
    _round(eng, "early", 10 * DAY - 100)
    eng.close()
    assert holding(tmp_path / "d", b"early-evt-")
    clock.t = 13 * DAY
    eng = _engine(tmp_path / "d", clock, retention_days=1.0)
    assert holding(tmp_path / "d", b"early-evt-") == []
    assert holding(tmp_path / "d", b"early-dec-") == []
    assert eng.profile("u1")["engagement"]["events"] == 2  # its click and its reward
    assert eng.store.count_events() == 0
    eng.close()
    # the log is empty, but its sequence numbers go on after a restart: a new event is not
    # taken for one that the snapshots already hold
    eng = _engine(tmp_path / "d", clock, retention_days=1.0)
    eng.ingest([{"user_id": "u1", "type": "click", "ts": 13 * DAY, "item_id": "item-b"}])
    assert eng.profile("u1")["engagement"]["events"] == 3
    eng.close()
    eng = _engine(tmp_path / "d", clock, retention_days=1.0)
    assert eng.profile("u1")["engagement"]["events"] == 3
    eng.close()
    # OPE and export of this log say which period they cover
    view = StoreView(tmp_path / "d")
    assert view.describe().endswith(f"rows before t={12 * DAY:g} were deleted by retention "
                                    "(retention_days)")
    view.close()


def test_events_older_than_the_window_are_refused(tmp_path):
    eng = _engine(tmp_path / "d", Clock(10 * DAY), retention_days=1.0)
    with pytest.raises(ValidationError, match=r"events\[1\].ts: is older than the retention"):
        eng.ingest([{"user_id": "u", "type": "view", "ts": 10 * DAY - 10},
                    {"user_id": "u", "type": "view", "ts": 8 * DAY}])
    assert eng.store.count_events() == 0
    eng.close()


@pytest.mark.parametrize("value", [0, -1.0, "7", True])
def test_bad_retention_days_names_the_field(value):
    with pytest.raises(ValidationError, match="retention_days"):
        Engine(None, policy="uniform", retention_days=value)


def test_personalizer_log_retention_drives_the_schedule(tmp_path):
    from engine.personalizer import Personalizer
    from engine.personalizer_settings import ServiceSettings

    clock = Clock(10 * DAY)
    eng = _engine(tmp_path / "d", clock)
    p = Personalizer(eng)
    _round(eng, "early", 10 * DAY - 100)
    clock.t = 13 * DAY
    _round(eng, "late", 13 * DAY - 100)
    assert holding(tmp_path / "d", b"early-evt-")  # no retention yet: kept
    p.configure(ServiceSettings.from_wire({"logRetentionDays": 1}, p.settings))
    eng.ingest([{"user_id": "u0", "type": "view", "ts": 13 * DAY}])  # the next call runs it
    assert holding(tmp_path / "d", b"early-evt-") == []
    assert holding(tmp_path / "d", b"late-evt-")
    p.configure(ServiceSettings.from_wire({"logRetentionDays": None}, p.settings))
    assert eng.upkeep.window is None  # back to the engine's own setting (keep everything)
    eng.close()


def test_quarantined_records_older_than_the_window_leave_every_file(tmp_path):
    # a quarantined record holds a write's raw text (any user's ids): retention takes it
    # once it was quarantined longer ago than the window (wall clock, as quarantine stamps)
    import time

    from engine.writer import QUARANTINE

    clock = Clock(10 * DAY)
    eng = _engine(tmp_path / "d", clock, retention_days=1.0)
    with eng.store.transaction() as db:
        db.execute(QUARANTINE, (time.time() - 2 * DAY, "test", "'old-quarantined-user'"))
        db.execute(QUARANTINE, (time.time() - 3600.0, "test", "'new-quarantined-user'"))
    assert eng.store.quarantined()[0] == 2
    counts = eng.upkeep.retain(clock.t)
    assert counts["quarantine"] == 1 and counts["wal"] == "truncated"
    assert eng.store.quarantined()[0] == 1
    assert holding(tmp_path / "d", b"old-quarantined-user") == []
    assert holding(tmp_path / "d", b"new-quarantined-user")
    eng.close()
    assert holding(tmp_path / "d", b"old-quarantined-user") == []
