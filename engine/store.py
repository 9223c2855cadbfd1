"""Durable store: one SQLite database under the data directory.

Tables: ``events`` (the write-ahead log, by ``seq``), ``snapshots`` (a pickled
:class:`~engine.shard.ProfileShard` per shard with its last ``seq``), ``decisions``,
``rewards`` (with join status), ``policy`` (learner state and last reward learned),
``quarantine`` (records that could not be written) and ``meta``. WAL mode: a commit survives
a killed process (``synchronous="FULL"``: a power cut too); ``secure_delete`` makes
:meth:`Store.forget` leave no bytes behind.

Decisions, rewards and reward events are group committed (:mod:`engine.groupcommit`):
durable in a journal when the call returns, moved into SQLite every ``FLUSH_EVERY`` calls.
Reads move the queue in first (readers see every acknowledged write); reopening replays it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from operator import itemgetter
from pathlib import Path

from engine.errors import StoreError
from engine.events import Event
from engine.groupcommit import WRITER_LOCK_NAME, GroupCommit, wait_for_writer
from engine.journal import private_dir, private_file
from engine.storeview import DB_NAME, StoreReads
from engine.writer import SCHEMA, connect, transaction

SCHEMA_VERSION = 1
#: ``json.dumps`` with compact separators, without building an encoder per call.
compact_json = json.JSONEncoder(separators=(",", ":")).encode
PAGE_SIZE = 16384
#: WAL size past which the checkpoint thread truncates the WAL (see _checkpoint_loop)
WAL_LIMIT = 64 << 20


class Store(StoreReads):
    """The engine's durable state in ``<data_dir>/loopwise.sqlite``.

    One engine process owns a data directory at a time (an exclusive lock enforces it).

    Parameters
    ----------
    data_dir
        The data directory (created if missing).
    synchronous
        ``"NORMAL"``: committed writes survive the process being killed; ``"FULL"``: a
        power cut too (every journal record and commit is synced to disk; much slower).
    writer
        Run group commits in a writer process (:mod:`engine.writer`); ``None``: unless
        ``LOOPWISE_WRITER=0``. Where it cannot start or fails, the store writes itself.
    create
        Create the directory and database if missing (``False``: readers refuse a directory
        that is not already an engine's).

    Examples
    --------
    >>> import tempfile
    >>> from engine.events import validate_events
    >>> with tempfile.TemporaryDirectory() as d:
    ...     store = Store(d)
    ...     evs = validate_events([{"user_id": "u1", "type": "view", "ts": 1.0, "event_id": "e1"}])
    ...     first = store.append_events(evs, [0])
    ...     again = store.append_events(evs, [0])      # same event id: not stored twice
    ...     n = store.count_events()
    ...     store.close()
    >>> first, again, n
    ([1], [None], 1)
    """

    #: Queued calls that trigger moving the journal into SQLite.
    FLUSH_EVERY = 256

    def __init__(self, data_dir: str | os.PathLike, synchronous: str = "NORMAL",
                 writer: bool | None = None, create: bool = True):
        if synchronous not in ("NORMAL", "FULL"):
            raise StoreError(f"synchronous: must be 'NORMAL' or 'FULL' (got {synchronous!r})")
        if not create and not (Path(data_dir) / DB_NAME).is_file():
            raise StoreError(f"{str(data_dir)!r} is not an engine data directory (it has no "
                             f"{DB_NAME}); readers never create one")
        self.data_dir = Path(data_dir)
        private_dir(self.data_dir)
        self._lock = private_file(self.data_dir / "LOCK")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            wait_for_writer(self.data_dir / WRITER_LOCK_NAME)
        except BlockingIOError:
            self._lock.close()
            raise StoreError(f"data directory {str(self.data_dir)!r} is in use by another engine; "
                             "close it first (one engine process per data directory)") from None
        except BaseException:
            self._lock.close()
            raise
        self.path = self.data_dir / DB_NAME
        for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):  # SQLite keeps the mode
            private_file(self.data_dir / name).close()
        self._synchronous = synchronous
        self._db = db = connect(self.path, synchronous)
        # a new database's page size (fixed once it exists): decision rows are a few KiB
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        self._stop = threading.Event()  # connections never checkpoint on commit: this thread does
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                              name="loopwise-checkpoint")
        self._checkpointer.start()
        self._commits = GroupCommit(
            db, self.data_dir, self.path, synchronous, self.FLUSH_EVERY,
            os.environ.get("LOOPWISE_WRITER", "1") != "0" if writer is None else bool(writer))
        self.flush()  # replay what a crash left in the journals
        self._next_seq = self._last_seq("events") + 1
        self._next_reward_seq = self._last_seq("rewards") + 1

    @property
    def db(self) -> sqlite3.Connection | None:
        """The SQLite connection, with every queued write moved in first (None once closed)."""
        if self._commits.pending:
            self.flush()
        return self._db

    def flush(self) -> None:
        """Move every queued write into SQLite (see :meth:`GroupCommit.flush`)."""
        self._commits.flush()

    def _checkpoint_loop(self, every: float = 1.0) -> None:
        # PASSIVE copies the WAL into the database without waiting, but under steady writes
        # SQLite never gets to restart the WAL, so it would grow without bound; past
        # WAL_LIMIT a TRUNCATE (waiting at most 20 ms for readers) empties it
        wal = Path(f"{self.path}-wal")
        with contextlib.closing(connect(self.path, self._synchronous)) as conn:
            conn.execute("PRAGMA busy_timeout=20")
            while not self._stop.wait(every):
                big = wal.exists() and wal.stat().st_size > WAL_LIMIT
                with contextlib.suppress(sqlite3.OperationalError):  # busy: next time
                    conn.execute(f"PRAGMA wal_checkpoint({'TRUNCATE' if big else 'PASSIVE'})")

    def _last_seq(self, table: str) -> int:
        """The highest seq ever issued in ``table`` (never reused after :meth:`forget`: kept in
        ``meta``, or ``sqlite_sequence`` in an older database of ``AUTOINCREMENT`` tables)."""
        sources = [f"SELECT MAX(seq) AS seq FROM {table}",
                   f"SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_seq:{table}'"]
        if self._scalar("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'") is not None:
            sources.append(f"SELECT seq FROM sqlite_sequence WHERE name = '{table}'")
        return int(self._scalar(
            f"SELECT COALESCE(MAX(seq), 0) FROM ({' UNION ALL '.join(sources)})"))

    def _scalar(self, sql: str, args: Sequence = ()) -> object:
        row = self.db.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def health(self) -> dict:
        """The store's state, for health checks: ``"ok"``; ``"degraded"`` while records are
        in quarantine (acknowledged writes that could not be stored; everything else was:
        see ``Engine.quarantine``); ``"failing"`` when group commits fail or the engine is
        closed. ``{"status", "quarantined", "reason"}``."""
        if self._db is None:
            return {"status": "failing", "quarantined": None, "reason": "the engine is closed"}
        error = self._commits.error  # why the last group commit failed (None: it did not)
        try:
            n, _ = self.quarantined()
        except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the check
            return {"status": "failing", "quarantined": None, "reason": error or repr(exc)}
        if error:
            return {"status": "failing", "quarantined": n, "reason": error}
        if n:
            return {"status": "degraded", "quarantined": n,
                    "reason": f"{n} acknowledged record(s) could not be stored and are in "
                              "quarantine (Engine.quarantine(), loopwise quarantine)"}
        return {"status": "ok", "quarantined": 0, "reason": None}

    def quarantined(self, limit: int | None = None) -> tuple[int, list[dict]]:
        """How many records are in quarantine, and the newest ``limit`` of them (id, ts,
        reason, record). The count alone reads what is committed: it leaves the queue alone."""
        db = self.db if limit else self._db
        n = int(db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])
        rows = [] if not limit else db.execute(
            "SELECT id, ts, reason, record FROM quarantine ORDER BY id DESC LIMIT ?", (limit,))
        return n, [dict(zip(("id", "ts", "reason", "record"), r, strict=True)) for r in rows]

    def release_quarantine(self, ids: Sequence[int] | None = None) -> int:
        """Delete quarantined records (``None``: all) once an operator has dealt with them."""
        with self.transaction():
            if ids is None:
                return self.db.execute("DELETE FROM quarantine").rowcount
            return self.db.executemany("DELETE FROM quarantine WHERE id = ?",
                                       [(int(i),) for i in ids]).rowcount

    def check_meta(self, expected: dict[str, object]) -> None:
        """Record settings a data directory depends on; refuse to reopen it with others."""
        rows = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        expected = {"schema_version": SCHEMA_VERSION, **expected}
        with self.transaction():
            for key, value in expected.items():
                encoded = json.dumps(value)
                if key in rows and rows[key] != encoded:
                    raise StoreError(f"{key}: the data directory was created with {rows[key]}, "
                                     f"not {encoded}; open it with the same setting or use a new "
                                     "data directory")
                if key not in rows:
                    self.db.execute("INSERT INTO meta VALUES (?, ?)", (key, encoded))

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self.db)

    def append_events(self, events: Sequence[Event], shards: Sequence[int]) -> list[int | None]:
        """Write events in one transaction; return each one's ``seq`` (None: duplicate event id)."""
        # duplicates in the batch are skipped here; stored ones by the unique index (any other
        # constraint still raises), and only if one was are the stored rows looked up
        seqs: list[int | None] = []
        rows = []
        seq = first = self._next_seq
        batch_ids: set[str] = set()
        for event, shard in zip(events, shards, strict=True):
            eid = event.event_id
            if eid is not None:
                if eid in batch_ids:
                    seqs.append(None)
                    continue
                batch_ids.add(eid)
            rows.append(_event_row(seq, event, shard))
            seqs.append(seq)
            seq += 1
        if rows:
            with self.transaction():
                before = self.db.total_changes
                self.db.executemany(
                    "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (event_id) "
                    "WHERE event_id IS NOT NULL DO NOTHING", rows)
                if self.db.total_changes - before != len(rows):
                    stored = {r[0] for r in self.db.execute(
                        "SELECT seq FROM events WHERE seq >= ? AND seq < ?", (first, seq))}
                    seqs = [s if s is not None and s in stored else None for s in seqs]
            self._next_seq = seq
        return seqs

    def iter_events(self, shard: int, after_seq: int, batch: int = 5000
                    ) -> Iterator[tuple[list[Event], list[int]]]:
        """Events of ``shard`` with ``seq > after_seq`` in log order, in batches."""
        cursor = self.db.execute(
            "SELECT seq, event_id, user_id, type, ts, item_id, value, extra FROM events "
            "WHERE seq > ? AND shard = ? ORDER BY seq", (after_seq, shard))
        while rows := cursor.fetchmany(batch):
            events, seqs = [], []
            for seq, eid, uid, type_, ts, item, value, extra in rows:
                topics, tags, text, attrs = decode_extra(extra)
                events.append(Event(uid, type_, ts, item, value, tuple(topics), tuple(tags), text,
                                    attrs, eid))
                seqs.append(seq)
            yield events, seqs

    def count_events(self, user_id: str | None = None) -> int:
        where, args = ("", ()) if user_id is None else (" WHERE user_id = ?", (user_id,))
        return int(self._scalar("SELECT COUNT(*) FROM events" + where, args))

    def save_snapshot(self, shard: int, seq: int, blob: bytes) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (shard, seq, blob))

    def marks(self) -> tuple[int, int]:
        """The seqs the next event and the next reward row will get."""
        return self._next_seq, self._next_reward_seq

    def insert_decisions(self, rows: Sequence[tuple]) -> None:
        """Log decision rows (group-committed; durable when this returns)."""
        self._commits.append([("decisions", list(rows))], [*map(_FIRST, rows)])

    def has_decision(self, decision_id: str) -> bool:
        """Whether a decision with this id is logged or queued, without moving the queue into
        SQLite (a rank that brings its own id checks it on every call)."""
        if self._commits.holds_decision(decision_id):
            return True
        return self._db.execute("SELECT 1 FROM decisions WHERE decision_id = ?",
                                (decision_id,)).fetchone() is not None

    def decision(self, decision_id: str) -> dict | None:
        cur = self.db.execute("SELECT * FROM decisions WHERE decision_id = ?", (decision_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([c[0] for c in cur.description], row, strict=True))

    def record_rewards(self, rows: Sequence[tuple[str, str, float, float, str]],
                       settle: list[tuple[float | None, str, str]],
                       events: Sequence[Event] = (), shards: Sequence[int] = ()
                       ) -> tuple[list[int], list[int]]:
        """Append reward rows (decision_id, user_id, value, ts, status), settle decisions
        (reward, new status, decision_id) and log ``events`` (whose ids must be new) as one
        group-committed write, durable when this returns; return the rows' and events' seqs."""
        first = self._next_reward_seq
        seqs = list(range(first, first + len(rows)))
        ops: list[tuple[str, list]] = []
        if rows:
            ops.append(("rewards", [(s, *r) for s, r in zip(seqs, rows, strict=True)]))
        if settle:
            ops.append(("settle", settle))
        event_seqs = list(range(self._next_seq, self._next_seq + len(events)))
        if events:
            ops.append(("events", [_event_row(seq, event, shard) for seq, event, shard
                                   in zip(event_seqs, events, shards, strict=True)]))
        if ops:
            self._commits.append(ops)
        self._next_reward_seq = first + len(rows)
        self._next_seq += len(events)
        return seqs, event_seqs

    def pending_decisions(self) -> list[tuple]:
        """(decision_id, user_id, deadline, chosen, variant, phi, n_features, chosen_meta) of
        decisions still awaiting a reward."""
        return self.db.execute(
            "SELECT decision_id, user_id, deadline, chosen, variant, phi, n_features, chosen_meta "
            "FROM decisions WHERE status = 'pending' ORDER BY deadline").fetchall()

    def has_late_reward(self, decision_id: str) -> bool:
        return self._scalar("SELECT 1 FROM rewards WHERE decision_id = ? AND status = 'late'",
                            (decision_id,)) is not None

    def learnable_rewards(self, variant: str, after_seq: int) -> list[tuple]:
        """(seq, value, chosen, phi, n_features, probabilities) of the variant's learned rewards
        after ``after_seq``, joined to their decisions (to re-learn after a crash)."""
        return self.db.execute(
            "SELECT r.seq, r.value, d.chosen, d.phi, d.n_features, d.probabilities "
            "FROM rewards r JOIN decisions d USING (decision_id) "
            "WHERE r.seq > ? AND d.variant = ? AND r.status IN ('joined', 'default') ORDER BY r.seq",
            (after_seq, variant)).fetchall()

    def variant_totals(self) -> tuple[dict[str, dict], dict[str, int]]:
        """Per variant, its learned rewards as ``{"n", "mean", "m2"}`` (``m2``: the sum of
        squared deviations from the mean), and how many distinct users its decisions went to."""
        # a learned reward (joined or default) is settled on its decision's row: no join;
        # the mean, then the squared deviations from it (two passes: no cancellation)
        learned = "FROM decisions WHERE status IN ('joined', 'default')"
        means = self.db.execute(f"SELECT variant, COUNT(*), AVG(reward) {learned} "
                                "GROUP BY variant").fetchall()
        rewards = {variant: {"n": n, "mean": mean, "m2": max(0.0, self._scalar(
            f"SELECT TOTAL((reward - ?) * (reward - ?)) {learned} AND variant = ?",
            (mean, mean, variant)))} for variant, n, mean in means}
        users = dict(self.db.execute(
            "SELECT variant, COUNT(DISTINCT user_id) FROM decisions GROUP BY variant"))
        return rewards, users

    def save_policy(self, variant: str, reward_seq: int, version: int, blob: bytes) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO policy VALUES (?, ?, ?, ?)",
                            (variant, reward_seq, version, blob))

    def forget(self, user_id: str) -> dict[str, int]:
        """Delete the user's events, decisions and rewards (secure_delete zeroes their pages;
        the WAL is truncated, checked, by engine.privacy.erase.scrub)."""
        with self.transaction():
            for table, last in (("events", self._next_seq - 1),
                                ("rewards", self._next_reward_seq - 1)):
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                (f"last_seq:{table}", str(last)))
            counts = {table: self.db.execute(f"DELETE FROM {table} WHERE user_id = ?",
                                             (user_id,)).rowcount
                      for table in ("events", "decisions", "rewards")}
            # quarantined records keep their rows as ascii() text: any naming the user
            counts["quarantine"] = self.db.execute(
                "DELETE FROM quarantine WHERE instr(record, ?) > 0", (ascii(user_id)[1:-1],)
            ).rowcount
        return counts

    def close(self) -> None:
        if self._db is not None:
            self._commits.close()
            self._stop.set()
            self._checkpointer.join(timeout=10)
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()


_FIRST = itemgetter(0)  # a decision row's id
_SEP = "\x1f"  # unit separator: starts a compact topics-only ``extra`` (JSON never does)


def _event_row(seq: int, event: Event, shard: int) -> tuple:
    extra = None
    if event.tags or event.text or event.attributes:
        extra = compact_json([event.topics, event.tags, event.text, event.attributes])
    elif event.topics:  # the common case: a separator-joined string, no JSON encoder
        topics = event.topics
        if any(_SEP in t for t in topics):
            extra = compact_json([topics, (), None, None])
        else:
            extra = _SEP + _SEP.join(topics)
    return (seq, event.event_id, event.user_id, shard, event.type, event.ts, event.item_id,
            event.value, extra)


def decode_extra(extra: str | None) -> tuple:
    """``(topics, tags, text, attributes)`` of an event row's ``extra`` (see _event_row)."""
    if not extra:
        return (), (), None, None
    if extra[0] == _SEP:
        return extra[1:].split(_SEP), (), None, None
    return json.loads(extra)
