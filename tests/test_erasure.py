"""Erasure without gaps (engine.privacy.erase, Engine.forget): an outside SQLite reader that
holds the WAL, item ids that only the erased user touched, and erasure under load repeated
200 times, each checked by reading every byte of every file in the data directory."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from filebytes import holding

from engine import Engine
from engine.store import DB_NAME, Store

CANDS = [{"id": "item-shared-a", "features": [1.0, 0.0]},
         {"id": "item-shared-b", "features": [0.0, 1.0]}]


def _engine(data: Path, **kw) -> Engine:
    return Engine(str(data), policy="lints", item_features=2, seed=0, clock=lambda: 100.0, **kw)


def _use(eng: Engine, user: str, item: str = "item-shared-a", n: int = 3) -> None:
    eng.ingest([{"user_id": user, "type": "click", "ts": 90.0 + i, "item_id": item,
                 "topics": ["jazz"]} for i in range(n)])
    for _ in range(n):
        d = eng.rank(user, CANDS)
        eng.reward(d.decision_id, 1.0)


def test_an_outside_reader_delays_the_truncation_and_the_engine_finishes_it(tmp_path):
    data = tmp_path / "d"
    secret = "user-0b7c-erased"
    eng = _engine(data)
    _use(eng, "other")
    _use(eng, secret)
    eng.snapshot()
    reader = sqlite3.connect(data / DB_NAME)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM events").fetchone()[0] > 0  # holds a snapshot
    erased = eng.forget(secret)
    assert erased["wal"] == "held" and erased["tries"] > 1 and "read transaction" in erased["reason"]
    assert erased["events"] == 6 and erased["decisions"] == 3
    assert holding(data, secret.encode()) == [DB_NAME + "-wal"]  # said so, not hidden
    _use(eng, "other")  # still held: the engine keeps working and keeps trying
    assert holding(data, secret.encode()) == [DB_NAME + "-wal"]
    reader.rollback()
    _use(eng, "other", n=1)  # the next call's retry truncates the WAL
    assert holding(data, secret.encode()) == []
    assert eng._expire == eng._expire_plain  # back on the plain path
    eng.close()
    reader.close()
    assert holding(data, secret.encode()) == []


def test_an_idle_outside_connection_does_not_hold_the_wal(tmp_path):
    data = tmp_path / "d"
    eng = _engine(data)
    _use(eng, "user-1d2e-erased")
    reader = sqlite3.connect(data / DB_NAME)
    reader.execute("SELECT COUNT(*) FROM events").fetchone()  # no transaction left open
    erased = eng.forget("user-1d2e-erased")
    assert erased["wal"] == "truncated" and "reason" not in erased
    assert holding(data, b"user-1d2e-erased") == []
    reader.close()
    eng.close()


def test_items_only_the_user_touched_leave_the_snapshots(tmp_path):
    data = tmp_path / "d"
    eng = _engine(data, shards=2)
    _use(eng, "other", item="item-shared-x")
    _use(eng, "user-9a9a-erased", item="item-shared-x")
    _use(eng, "user-9a9a-erased", item="item-only-erased-user")
    eng.snapshot()
    assert holding(data, b"item-only-erased-user")
    erased = eng.forget("user-9a9a-erased")
    assert erased["items"] == 1 and erased["snapshot"] == eng.router.shard_of("user-9a9a-erased")
    eng.close()
    assert holding(data, b"item-only-erased-user") == []
    assert holding(data, b"item-shared-x")  # another user's item stays
    eng = _engine(data, shards=2)
    assert eng.profile("other") is not None and eng.profile("user-9a9a-erased") is None
    eng.close()


def _short_reads(path: Path, stop: threading.Event) -> None:
    conn = sqlite3.connect(path, timeout=10)
    while not stop.is_set():
        conn.execute("BEGIN")
        conn.execute("SELECT COUNT(*) FROM events").fetchone()
        time.sleep(0.03)  # longer than a try's wait for locks: the erasure must retry
        conn.execute("COMMIT")
        time.sleep(0.01)
    conn.close()


def test_erasure_under_load_leaves_no_byte_200_times(tmp_path, monkeypatch):
    """Each round: other users' traffic (group commits every 4 calls in the writer process,
    the checkpoint thread) around one user's events, decisions and rewards, then that user
    is erased and every file is read while the engine runs."""
    monkeypatch.setattr(Store, "FLUSH_EVERY", 4)
    data = tmp_path / "d"
    eng = _engine(data, snapshot_every=50)
    stop = threading.Event()
    reader = threading.Thread(target=_short_reads, args=(data / DB_NAME, stop), daemon=True)
    reader.start()  # a monitoring tool: short read transactions, all the time
    failures, retried = [], 0
    for r in range(200):
        secret = f"user-{r:03d}-erased-under-load"
        eng.ingest([{"user_id": f"bg{(r + k) % 7}", "type": "view", "ts": 95.0, "item_id": "i"}
                    for k in range(3)])
        _use(eng, secret, n=2)
        d = eng.rank(f"bg{r % 7}", CANDS)
        eng.reward(d.decision_id, 0.0)
        _use(eng, secret, n=1)
        erased = eng.forget(secret)
        retried += erased["tries"] > 1
        held = holding(data, secret.encode())
        if erased["wal"] != "truncated" or held or erased["events"] != 6:  # 3 clicks, 3 rewards
            failures.append((r, erased, held))
    stop.set()
    reader.join(10)
    eng.close()
    assert failures == []
    assert retried > 0  # the reader did get in the way, and the retries got past it
