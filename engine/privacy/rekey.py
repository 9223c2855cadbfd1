"""Re-key a pseudonymous data directory (``loopwise rekey``): every stored pseudonym under
the old key becomes the pseudonym of the same user id under the new key.

An HMAC cannot be inverted, so the operator supplies the application's user ids with both
keys. With the engine closed (it snapshots every shard at close, so every logged event is in
a snapshot and profiles can move between shards), in one transaction: ``old pseudonym ->
new pseudonym`` is built from the ids; events (with their shard), decisions and rewards are
rewritten through it and each shard's profiles renamed (moved between shards where needed);
pseudonyms no id produces are refused, or with ``drop_unmatched`` erased as
:meth:`Engine.forget` would; then the WAL is truncated and the operator destroys the old
key. Variant assignment hashes the stored id, so re-keying re-draws every user's A/B
variant: re-key between experiments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from engine.errors import StoreError
from engine.events import EventTypes
from engine.privacy import erase
from engine.privacy.pseudonym import Pseudonyms, check_directory, record_key
from engine.privacy.retention import keep_last_seqs
from engine.profile import ProfileConfig
from engine.router import Router
from engine.shard import ProfileShard
from engine.store import Store

_TABLES = ("events", "decisions", "rewards")


def _shards(store, n: int) -> list[ProfileShard]:
    """Every shard restored from its snapshot; refused if any event is not in one."""
    shards = []
    for i in range(n):
        shard = ProfileShard(i, ProfileConfig(), EventTypes())
        snap = store.load_snapshot(i)
        if snap is not None:
            shard.restore(snap[1])
        tail = store.db.execute("SELECT COUNT(*) FROM events WHERE shard = ? AND seq > ?",
                                (i, shard.last_seq)).fetchone()[0]
        if tail:
            raise StoreError(f"rekey: shard {i} has {tail} event(s) after its snapshot; open "
                             "the engine and close it once (it snapshots every shard), then "
                             "re-key")
        shards.append(shard)
    return shards


def _stored(store, shards) -> set[str]:
    ids = {u for s in shards for u in s.user_ids()}
    for table in _TABLES:
        ids.update(r[0] for r in store.db.execute(f"SELECT DISTINCT user_id FROM {table}"))
    return ids


def rekey(data_dir: str | os.PathLike, old_key_file: str | os.PathLike,
          new_key_file: str | os.PathLike, user_ids: Iterable[str],
          drop_unmatched: bool = False) -> dict[str, int]:
    """Re-key ``data_dir`` from the old key to the new one, given the application's user
    ids. Stored pseudonyms that no given id produces are refused, or with
    ``drop_unmatched`` erased. Returns ``{"users", "moved", "dropped"}``."""
    old = Pseudonyms.from_file(old_key_file, data_dir)
    new = Pseudonyms.from_file(new_key_file, data_dir)
    store = Store(data_dir, create=False)
    try:
        check_directory(store, old)
        n = int(json.loads(store.get_meta("shards") or "1"))
        shards = _shards(store, n)
        stored = _stored(store, shards)
        mapping = {p: new(u) for u in user_ids if (p := old(u)) in stored}
        unmatched = sorted(stored - mapping.keys())
        if unmatched and not drop_unmatched:
            raise StoreError(f"rekey: {len(unmatched)} stored pseudonym(s) match none of the "
                             "user ids given; give every user id, or erase those users with "
                             "--drop-unmatched")
        router = Router(n)
        with store.transaction() as db:
            keep_last_seqs(db)
            for table in _TABLES:
                db.executemany(f"DELETE FROM {table} WHERE user_id = ?", [(p,) for p in unmatched])
            db.executemany("UPDATE events SET user_id = ?, shard = ? WHERE user_id = ?",
                           [(q, router.shard_of(q), p) for p, q in mapping.items()])
            for table in _TABLES[1:]:
                db.executemany(f"UPDATE {table} SET user_id = ? WHERE user_id = ?",
                               [(q, p) for p, q in mapping.items()])
            for p in unmatched:  # quarantined records keep rows as text
                db.execute("DELETE FROM quarantine WHERE instr(record, ?) > 0", (p,))
            for p, q in mapping.items():
                db.execute("UPDATE quarantine SET record = replace(record, ?, ?)", (p, q))
        moved = _move(shards, mapping, unmatched, router)
        last = max(s.last_seq for s in shards)
        for shard in shards:  # every logged event is in every shard's snapshot now
            shard.last_seq = last
            store.save_snapshot(shard.shard_id, last, shard.snapshot())
        record_key(store, new)
        erase.scrub(store, timeout=10.0)
    finally:
        store.close()
    return {"users": len(mapping), "moved": moved, "dropped": len(unmatched)}


def _move(shards, mapping: dict[str, str], unmatched: list[str], router: Router) -> int:
    """Rename every profile (moving it to its new shard); drop the unmatched. Returns how
    many changed shards."""
    popped = []
    for shard in shards:
        for pid in unmatched:
            shard.forget(pid)
        for pid in shard.user_ids():
            popped.append((shard.shard_id, mapping[pid], shard.pop_user(pid)))
    moved = 0
    for was, pid, state in popped:
        to = router.shard_of(pid)
        moved += to != was
        shards[to].put_user(pid, state)
    return moved
