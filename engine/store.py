"""Durable store: one SQLite database under the data directory.

Tables: ``events`` (the write-ahead log, one row per accepted event, numbered by ``seq``),
``snapshots`` (one pickled :class:`~engine.shard.ProfileShard` per shard with the last
``seq`` it holds), ``decisions``, ``rewards`` (every reward report with its join status),
``policy`` (the learner's state with the last reward it learned) and ``meta``.

WAL mode with ``synchronous=NORMAL``: a committed transaction survives the process being
killed (not a power cut; set ``synchronous="FULL"`` for that). ``secure_delete`` is on so
that :meth:`Store.forget` leaves no bytes of a forgotten user behind.

Decisions, rewards and reward events (the one-at-a-time hot path) are *group committed*:
each call's writes go to a :class:`~engine.journal.Journal`, one record copied into a
mapped file (as durable as a commit), and queued calls move into SQLite in one transaction
every ``FLUSH_EVERY`` calls. That transaction runs in a writer process beside the engine
(:mod:`engine.writer`) while the engine appends to a second journal; with ``writer=False``,
or where the process cannot start, it runs in the engine's own thread.
Reading anything through the store, or through :attr:`Store.db`, first waits for the
writer and moves the rest of the queue in, so readers always see every acknowledged write;
reopening replays what the journals hold.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import select
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine.errors import StoreError
from engine.events import Event
from engine.journal import Journal
from engine.writer import Transaction, apply_queued, connect

SCHEMA_VERSION = 1
#: ``json.dumps`` with compact separators, without building an encoder per call.
compact_json = json.JSONEncoder(separators=(",", ":")).encode
DB_NAME = "loopwise.sqlite"
PAGE_SIZE = 16384
JOURNAL_NAME = "journal"
#: The two journals: calls append to one while the writer process commits the other.
JOURNAL_NAMES = (JOURNAL_NAME, JOURNAL_NAME + ".1")
#: Held by the writer process while it runs (see :mod:`engine.writer`).
WRITER_LOCK_NAME = "LOCK.writer"
#: Seconds a new store waits for a writer left running by a killed engine to finish.
WRITER_WAIT = 30.0
#: Seconds the store waits for one group commit of the writer before it kills the writer
#: and commits in its own thread.
WRITER_TIMEOUT = 60.0
WRITER_SCRIPT = str(Path(__file__).with_name("writer.py"))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, event_id TEXT, user_id TEXT NOT NULL,
    shard INTEGER NOT NULL, type TEXT NOT NULL, ts REAL NOT NULL, item_id TEXT, value REAL,
    extra TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events(event_id) WHERE event_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS snapshots (
    shard INTEGER PRIMARY KEY, seq INTEGER NOT NULL, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, ts REAL NOT NULL, deadline REAL NOT NULL,
    variant TEXT NOT NULL, policy TEXT NOT NULL, policy_version INTEGER NOT NULL,
    candidate_ids TEXT NOT NULL, probabilities BLOB NOT NULL, chosen INTEGER NOT NULL,
    ranking TEXT NOT NULL, slot_probabilities BLOB, phi BLOB NOT NULL, n_features INTEGER NOT NULL,
    context TEXT, chosen_meta TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending', reward REAL);
CREATE INDEX IF NOT EXISTS decisions_pending ON decisions(deadline) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS rewards (
    seq INTEGER PRIMARY KEY, decision_id TEXT NOT NULL, user_id TEXT NOT NULL,
    value REAL NOT NULL, ts REAL NOT NULL, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rewards_decision ON rewards(decision_id);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, reason TEXT NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS policy (
    variant TEXT PRIMARY KEY, reward_seq INTEGER NOT NULL, version INTEGER NOT NULL,
    blob BLOB NOT NULL);
"""


class Store:
    """The engine's durable state in ``<data_dir>/loopwise.sqlite``.

    One engine process owns a data directory at a time (an exclusive lock file enforces it).

    Parameters
    ----------
    data_dir
        The data directory (created if missing).
    synchronous
        ``"NORMAL"``: committed writes survive the process being killed; ``"FULL"``: a
        power cut too (every journal record and commit is synced to disk; much slower).
    writer
        Run group commits in a writer process (:mod:`engine.writer`) instead of the
        engine's thread. ``None``: yes, unless the environment sets ``LOOPWISE_WRITER=0``.
        Where the process cannot start or fails, the store warns and writes itself.
    create
        Create the directory and database if missing (``False``: readers such as export and
        OPE refuse a directory that is not already an engine's).

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
        _private_dir(self.data_dir)
        self._lock = _private_file(self.data_dir / "LOCK")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreError(f"data directory {str(self.data_dir)!r} is in use by another engine; "
                             "close it first (one engine process per data directory)") from None
        try:
            _wait_for_writer(self.data_dir / WRITER_LOCK_NAME)
        except BaseException:
            self._lock.close()
            raise
        self.path = self.data_dir / DB_NAME
        for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):  # SQLite keeps the mode
            _private_file(self.data_dir / name).close()
        self.error: str | None = None  # why the last group commit failed (None: it did not)
        # every connection (this one, the checkpoint thread's, the writer process's) has the
        # same settings: the chosen durability, secure_delete, and no checkpoint after a
        # commit: checkpoints copy the WAL into the database file, and done inline they
        # stall the commit that triggers them; a background thread runs passive ones
        # instead (they never block writers)
        self._synchronous = synchronous
        self._db = db = connect(self.path, synchronous)
        # 16 KiB pages for a new database (fixed once it exists): a decision row carries a
        # few KiB of features, and a group commit writes a quarter as many WAL frames
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                              name="loopwise-checkpoint")
        self._checkpointer.start()
        fsync = synchronous == "FULL"
        self._journals = [Journal(self.data_dir / name, fsync=fsync) for name in JOURNAL_NAMES]
        self._active = 0  # the journal calls append to
        # the decision ids each journal holds until it is cleared (see has_decision)
        self._queued_decisions: list[set[str]] = [set() for _ in self._journals]
        self._n_queued = 0  # calls in it (the journals are the queue: no copy in memory)
        # the writer process, started once calls queue up
        self._use_writer = (os.environ.get("LOOPWISE_WRITER", "1") != "0"
                            if writer is None else bool(writer))
        self._writer: subprocess.Popen | None = None
        self._ready = False
        self._busy: int | None = None  # the journal the writer process is committing
        self.flush()  # replay what a crash left in the journals
        self._next_seq = self._last_seq("events") + 1
        self._next_reward_seq = self._last_seq("rewards") + 1

    @property
    def closed(self) -> bool:
        return self._db is None

    @property
    def db(self) -> sqlite3.Connection | None:
        """The SQLite connection, with every queued write moved in first (None once closed)."""
        if self._busy is not None or any(j.end for j in self._journals):
            self.flush()
        return self._db

    def flush(self) -> None:
        """Move every queued write into SQLite: wait for the writer process's transaction,
        then write what the journals still hold in one transaction here, and clear them.
        (Both journals hold records only after a crash or a failed writer; one transaction
        gives the same rows in any order of records, see :mod:`engine.writer`.)"""
        if self._busy is not None:
            self._await_writer()
        journals = [j for j in self._journals if j.end]
        if not journals:
            return
        try:
            apply_queued(self._db, [p for j in journals for p in j.records()])
        except Exception as exc:
            self.error = f"group commit failed: {exc!r}"
            raise
        self.error = None
        for journal in journals:
            journal.clear()
        for journal, ids in zip(self._journals, self._queued_decisions, strict=True):
            if not journal.end:
                ids.clear()
        self._n_queued = 0

    def _defer(self, ops: list[tuple[str, list]]) -> None:
        """Make one call's writes durable in the journal, queued for SQLite."""
        self._journals[self._active].append(pickle.dumps(ops, protocol=pickle.HIGHEST_PROTOCOL))
        self._n_queued = n = self._n_queued + 1
        if n >= self.FLUSH_EVERY // 4 and self._writer is None and self._use_writer:
            self._start_writer()  # ready by the time the journal is full
        if n >= self.FLUSH_EVERY:
            self._hand_off()

    # ---- the writer process ------------------------------------------------------------
    def _hand_off(self) -> None:
        """Give the full journal to the writer process and switch to the other one (after
        the writer has finished with it); without a writer, flush here."""
        if self._busy is not None:
            self._await_writer()
        if self._writer is None or not self._writer_ready():
            self.flush()
            return
        index = self._active
        try:
            self._writer.stdin.write(f"F {index} {self._journals[index].end}\n".encode())
            self._writer.stdin.flush()
        except OSError as exc:  # the writer is gone: write here from now on
            self._writer_failed(f"it could not be reached ({exc})")
            self.flush()
            return
        self._busy, self._n_queued = index, 0
        self._active = 1 - index

    def _await_writer(self) -> None:
        """Wait for the writer's transaction; then its journal is cleared. If it failed (or
        died), the journal keeps its records, for :meth:`flush` to write in this process."""
        index = self._busy
        try:
            if select.select([self._writer.stdout], [], [], WRITER_TIMEOUT)[0]:
                reply = self._writer.stdout.readline()
            else:  # stuck (stopped, or a disk that hangs): it is killed below
                reply = f"E no answer in {WRITER_TIMEOUT:g} s".encode()
        except OSError as exc:
            reply = f"E {exc}".encode()
        self._busy = None
        if reply == b"D\n":
            self._journals[index].clear()
            self._queued_decisions[index].clear()
            return
        reason = reply.decode(errors="replace").strip()[2:] or "it exited"
        self._writer_failed(f"its group commit failed: {reason}")

    def _start_writer(self) -> None:
        try:
            self._writer = subprocess.Popen(
                [sys.executable, WRITER_SCRIPT, str(self.path), self._synchronous,
                 str(self.data_dir / WRITER_LOCK_NAME), *(str(j.path) for j in self._journals)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)  # (select sees all)
        except OSError as exc:
            self._writer_failed(f"it could not start ({exc})")

    def _writer_ready(self) -> bool:
        """Whether the writer has started (without waiting: until then, flush here)."""
        if not self._ready:
            stdout = self._writer.stdout
            if not select.select([stdout], [], [], 0)[0]:
                return False  # still starting
            self._ready = stdout.readline() == b"R\n"
            if not self._ready:
                self._writer_failed("it did not start")
        return self._ready

    def _writer_failed(self, why: str) -> None:
        warnings.warn(f"loopwise: the group-commit writer process stopped: {why}; group "
                      "commits run in the engine's own thread from now on", RuntimeWarning,
                      stacklevel=3)
        self._use_writer = False
        self._stop_writer(wait=1.0)  # (a killed writer's open transaction rolls back)

    def _stop_writer(self, wait: float = 30.0) -> None:
        """Ask the writer to exit (it finishes any transaction first) and reap it; kill it
        if it has not exited after ``wait`` seconds."""
        proc, self._writer, self._ready = self._writer, None, False
        if proc is None:
            return
        try:
            proc.stdin.write(b"Q\n")
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def _checkpoint_loop(self, every: float = 1.0) -> None:
        conn = connect(self.path, self._synchronous)
        try:
            while not self._stop.wait(every):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.OperationalError:
                    pass  # busy: try again next time
        finally:
            conn.close()

    def _last_seq(self, table: str) -> int:
        """The highest seq ever issued in ``table``: never reused, even after :meth:`forget`
        deleted the newest rows (snapshots and learners remember seqs). Databases created
        before 2026-11 keep theirs in ``sqlite_sequence`` (AUTOINCREMENT), newer ones in
        ``meta``; ``AUTOINCREMENT`` costs a second B-tree write per row."""
        has_sequence = self._scalar(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'") is not None
        sources = [f"SELECT MAX(seq) AS seq FROM {table}",
                   f"SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_seq:{table}'"]
        if has_sequence:
            sources.append(f"SELECT seq FROM sqlite_sequence WHERE name = '{table}'")
        return int(self._scalar(
            f"SELECT COALESCE(MAX(seq), 0) FROM ({' UNION ALL '.join(sources)})"))

    def _scalar(self, sql: str, args: Sequence = ()) -> object:
        row = self.db.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def quarantined(self, limit: int | None = None) -> tuple[int, list[dict]]:
        """How many records are in quarantine, and the newest ``limit`` of them (id, ts,
        reason, record): acknowledged writes that could not be stored (see
        :func:`engine.writer.apply_queued`)."""
        db = self.db
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

    # ---- meta ------------------------------------------------------------------------
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

    def get_meta(self, key: str) -> str | None:
        return self._scalar("SELECT value FROM meta WHERE key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ---- transactions ----------------------------------------------------------------
    def transaction(self) -> Transaction:
        return Transaction(self.db)

    # ---- events ----------------------------------------------------------------------
    def append_events(self, events: Sequence[Event], shards: Sequence[int]) -> list[int | None]:
        """Write events in one transaction; return each one's ``seq`` (None: duplicate event id)."""
        # Duplicates of stored events are skipped by the unique index (ON CONFLICT DO NOTHING:
        # any other constraint still raises); the row count says whether any was, and only
        # then are the stored rows looked up. Duplicates inside the batch are caught here.
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
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                return
            events, seqs = [], []
            for seq, eid, uid, type_, ts, item, value, extra in rows:
                if not extra:
                    topics, tags, text, attrs = (), (), None, None
                elif extra[0] == _SEP:
                    topics, tags, text, attrs = extra[1:].split(_SEP), (), None, None
                else:
                    topics, tags, text, attrs = json.loads(extra)
                events.append(Event(uid, type_, ts, item, value, tuple(topics), tuple(tags), text,
                                    attrs, eid))
                seqs.append(seq)
            yield events, seqs

    def count_events(self, user_id: str | None = None) -> int:
        if user_id is None:
            return int(self._scalar("SELECT COUNT(*) FROM events"))
        return int(self._scalar("SELECT COUNT(*) FROM events WHERE user_id = ?", (user_id,)))

    # ---- snapshots -------------------------------------------------------------------
    def save_snapshot(self, shard: int, seq: int, blob: bytes) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (shard, seq, blob))

    def load_snapshot(self, shard: int) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT seq, blob FROM snapshots WHERE shard = ?", (shard,)).fetchone()
        return None if row is None else (row[0], row[1])

    # ---- decisions and rewards -------------------------------------------------------
    def insert_decisions(self, rows: Sequence[tuple]) -> None:
        """Log decision rows (group-committed; durable when this returns)."""
        self._queued_decisions[self._active].update(row[0] for row in rows)
        self._defer([("decisions", list(rows))])

    def has_decision(self, decision_id: str) -> bool:
        """Whether a decision with this id is logged or queued to be, without moving the
        queue into SQLite (as :attr:`db` does): a rank that brings its own id checks it
        on every call."""
        if any(decision_id in ids for ids in self._queued_decisions):
            return True
        return self._db.execute("SELECT 1 FROM decisions WHERE decision_id = ?",
                                (decision_id,)).fetchone() is not None

    def decision(self, decision_id: str) -> sqlite3.Row | None:
        cur = self.db.execute("SELECT * FROM decisions WHERE decision_id = ?", (decision_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([c[0] for c in cur.description], row, strict=True))

    def record_rewards(self, rows: Sequence[tuple[str, str, float, float, str]],
                       settle: Sequence[tuple[str, float | None, str]],
                       events: Sequence[Event] = (), shards: Sequence[int] = ()
                       ) -> tuple[list[int], list[int]]:
        """Append reward rows (decision_id, user_id, value, ts, status), settle decisions
        (decision_id, reward, new status) and log ``events`` (whose ids must be new: reward
        events are unique by construction) as one group-committed write, durable when this
        returns. Returns the reward rows' seqs and the events' seqs."""
        first = self._next_reward_seq
        seqs = list(range(first, first + len(rows)))
        ops: list[tuple[str, list]] = []
        if rows:
            ops.append(("rewards", [(s, *r) for s, r in zip(seqs, rows, strict=True)]))
        if settle:
            ops.append(("settle", [(reward, status, did) for did, reward, status in settle]))
        event_seqs: list[int] = []
        if events:
            event_rows = []
            seq = self._next_seq
            for event, shard in zip(events, shards, strict=True):
                event_rows.append(_event_row(seq, event, shard))
                event_seqs.append(seq)
                seq += 1
            ops.append(("events", event_rows))
        if ops:
            self._defer(ops)
        self._next_reward_seq = first + len(rows)
        if events:
            self._next_seq = event_seqs[-1] + 1
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

    # ---- policy ----------------------------------------------------------------------
    def save_policy(self, variant: str, reward_seq: int, version: int, blob: bytes) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO policy VALUES (?, ?, ?, ?)",
                            (variant, reward_seq, version, blob))

    def load_policy(self, variant: str) -> tuple[int, int, bytes] | None:
        return self.db.execute("SELECT reward_seq, version, blob FROM policy WHERE variant = ?",
                               (variant,)).fetchone()

    # ---- privacy ---------------------------------------------------------------------
    def forget(self, user_id: str) -> dict[str, int]:
        """Delete the user's events, decisions and rewards, and scrub freed pages and the WAL."""
        with self.transaction():
            for table, last in (("events", self._next_seq - 1),
                                ("rewards", self._next_reward_seq - 1)):
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                (f"last_seq:{table}", str(last)))
            counts = {
                "events": self.db.execute("DELETE FROM events WHERE user_id = ?", (user_id,)).rowcount,
                "decisions": self.db.execute("DELETE FROM decisions WHERE user_id = ?",
                                             (user_id,)).rowcount,
                "rewards": self.db.execute("DELETE FROM rewards WHERE user_id = ?",
                                           (user_id,)).rowcount,
                # quarantined records keep their rows as ascii() text: any naming the user
                "quarantine": self.db.execute(
                    "DELETE FROM quarantine WHERE instr(record, ?) > 0",
                    (ascii(user_id)[1:-1],)).rowcount,
            }
        return counts

    def scrub(self) -> None:
        """Checkpoint and truncate the WAL, so deleted rows survive in no file."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        if self._db is not None:
            self.flush()
            self._stop_writer()
            for journal in self._journals:
                journal.close()
            self._stop.set()
            self._checkpointer.join(timeout=10)
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()


def _private_dir(path: Path) -> None:
    """Create ``path`` readable by its owner only (0700), or make an existing one so."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        try:
            os.chmod(path, 0o700)
        except OSError as exc:
            warnings.warn(f"loopwise: cannot make {str(path)!r} private (0700): {exc}",
                          RuntimeWarning, stacklevel=3)


def _private_file(path: Path):
    """Open (or create) ``path`` for writing, readable by its owner only (0600)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return os.fdopen(fd, "r+")


def _wait_for_writer(path: Path, timeout: float = WRITER_WAIT) -> None:
    """Wait until no writer process holds ``path`` (one left by a killed engine finishes
    its transaction and exits when it sees the engine gone)."""
    with _private_file(path) as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return  # (released when the file closes)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(f"{str(path)!r}: a writer process of an earlier engine "
                                     f"still runs after {timeout:.0f} s; stop it, then "
                                     "reopen") from None
                time.sleep(0.01)


_SEP = "\x1f"  # unit separator: starts a compact topics-only ``extra`` (JSON never does)


def _event_row(seq: int, event: Event, shard: int) -> tuple:
    extra = None
    if event.tags or event.text or event.attributes:
        extra = compact_json([event.topics, event.tags, event.text, event.attributes])
    elif event.topics:  # the common case, in a tenth of the time JSON takes
        topics = event.topics
        if any(_SEP in t for t in topics):
            extra = compact_json([topics, (), None, None])
        else:
            extra = _SEP + _SEP.join(topics)
    return (seq, event.event_id, event.user_id, shard, event.type, event.ts, event.item_id,
            event.value, extra)
