"""Erasure without gaps: what :meth:`engine.Engine.forget` needs beyond deleting rows.

- :func:`items_only_of`: the items a user alone touched in their shard, whose ids (and
  latent vectors) would otherwise stay in the shard's snapshot and reveal the user;
- :func:`scrub`: checkpoint the WAL and truncate it, and check that it worked. Deleted rows
  (zeroed in the database file by ``secure_delete``) survive in older WAL frames until a
  checkpoint truncates it, which cannot happen while another connection (a backup tool, an
  analyst's ``sqlite3`` shell) holds a read transaction: then it retries until ``timeout``
  and reports, and the engine retries on later calls until it succeeds.
"""

from __future__ import annotations

import itertools
import time

WAL_HELD = ("another connection holds a read transaction on the database: older WAL "
            "frames still hold the erased rows; the engine retries on later calls and at "
            "close (end that reader to finish the erasure)")


def items_only_of(store, user_id: str, shard: int) -> list[str]:
    """Ids of the items in ``user_id``'s events that no other user's events in ``shard``
    name (read before the user's events are deleted)."""
    mine = [r[0] for r in store.db.execute(
        "SELECT DISTINCT item_id FROM events WHERE user_id = ? AND item_id IS NOT NULL",
        (user_id,))]
    if not mine:
        return []
    shared = set()
    for i in range(0, len(mine), 500):  # SQLite's limit on bound parameters
        chunk = mine[i:i + 500]
        shared.update(r[0] for r in store.db.execute(
            f"SELECT DISTINCT item_id FROM events WHERE shard = ? AND user_id <> ? AND "
            f"item_id IN ({','.join('?' * len(chunk))})", (shard, user_id, *chunk)))
    return [item for item in mine if item not in shared]


def scrub(store, timeout: float = 2.0, pause: float = 0.02) -> dict:
    """Checkpoint and truncate the WAL, retrying for up to ``timeout`` seconds while a
    reader blocks it. ``{"wal": "truncated", "tries": n}`` or ``{"wal": "held", "tries": n,
    "reason": ...}``. Each try waits at most ``pause`` for locks (not the connection's busy
    timeout of seconds: an engine call retrying a held erasure must stay fast)."""
    db = store.db
    deadline = time.monotonic() + timeout
    wait = db.execute("PRAGMA busy_timeout").fetchone()[0]
    db.execute(f"PRAGMA busy_timeout = {int(pause * 1000)}")
    try:
        for tries in itertools.count(1):
            busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:  # TRUNCATE returns 0 only once every frame is copied back and cut
                return {"wal": "truncated", "tries": tries}
            if time.monotonic() >= deadline:
                return {"wal": "held", "tries": tries, "reason": WAL_HELD}
            time.sleep(pause)
    finally:
        db.execute(f"PRAGMA busy_timeout = {int(wait)}")
