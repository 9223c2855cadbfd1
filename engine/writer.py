"""Group commits into SQLite (:func:`apply_queued`), and the writer process that runs them.

:mod:`engine.groupcommit` hands a full journal to this module, run as a script. One line
each way per journal:

- store: ``F <journal index> <end offset>``; writer: applies those records in one transaction
  and answers ``D`` (done) or ``E <error>`` (rolled back; the store then writes itself);
- store: ``Q`` (or closes the pipe, or dies): the writer finishes its transaction and exits.

Only the store clears a journal, after ``D``, so what a crash interrupts is replayed at the next
open (:func:`apply_queued` gives the same rows in any order of records). The writer holds
``LOCK.writer`` while it runs; a new store waits for it, so an orphaned writer finishes first
(it sees the engine gone when its standard input closes, and every forked child's copy of it).
As a script it imports the standard library and :mod:`engine.journal` only: it starts fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import select
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

if __package__:
    from engine.journal import read_records
else:  # the writer process: journal.py beside this file, without importing the engine
    from journal import read_records

#: Seconds the store waits for one group commit of the writer before it kills the writer.
WRITER_TIMEOUT = 60.0
WRITER_SCRIPT = str(Path(__file__).resolve())

#: The store's tables (created where missing).
SCHEMA = """
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

# Journaled writes, applied in this order (a decision is inserted before it is settled).
# Applying a record twice (a crash before the journal was cleared) changes nothing.
DEFERRED = {
    "decisions": "INSERT INTO decisions (decision_id, user_id, ts, deadline, variant, "
                 "policy, policy_version, candidate_ids, probabilities, chosen, ranking, "
                 "slot_probabilities, phi, n_features, context, chosen_meta, status, reward) "
                 "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (decision_id) DO "
                 "UPDATE SET status = excluded.status, reward = excluded.reward "
                 "WHERE excluded.status <> 'pending'",
    "rewards": "INSERT OR IGNORE INTO rewards (seq, decision_id, user_id, value, ts, status) "
               "VALUES (?,?,?,?,?,?)",
    "settle": "UPDATE decisions SET reward = ?, status = ? WHERE decision_id = ?",
    "events": "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?)",
}

#: Where a record that cannot be read or written goes (see :func:`apply_queued`).
QUARANTINE = "INSERT INTO quarantine (ts, reason, record) VALUES (?, ?, ?)"


def apply_queued(db: sqlite3.Connection, payloads: Sequence[bytes]) -> int:
    """Write queued calls (pickled lists of ``(op, rows)``, ``op`` a key of
    :data:`DEFERRED`) into ``db`` in one transaction; return how many were quarantined.

    A record that cannot be unpickled or written goes to the ``quarantine`` table (time,
    reason, the record as ``ascii()`` text) and the rest is written: one bad record never
    blocks the store. A failure no single record causes (a full disk) raises, writing nothing.

    Examples
    --------
    >>> db = sqlite3.connect(":memory:", isolation_level=None)
    >>> _ = db.execute("CREATE TABLE rewards (seq INTEGER PRIMARY KEY, decision_id TEXT, "
    ...                "user_id TEXT, value REAL, ts REAL, status TEXT)")
    >>> _ = db.execute("CREATE TABLE quarantine (id INTEGER PRIMARY KEY, ts REAL, "
    ...                "reason TEXT, record TEXT)")
    >>> call = pickle.dumps([("rewards", [(1, "d1", "u1", 1.0, 5.0, "joined")])])
    >>> bad = pickle.dumps([("rewards", [(2, "d2", chr(0xD83D), 1.0, 5.0, "joined")])])
    >>> apply_queued(db, [call, call, bad])  # the same record twice: one row
    1
    >>> db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0]
    1
    >>> db.execute("SELECT reason FROM quarantine").fetchone()[0][:25]
    "UnicodeEncodeError('utf-8"
    """
    calls, bad = [], []
    for payload in payloads:
        try:
            ops = pickle.loads(payload)
            if not all(op in DEFERRED and isinstance(rows, list) for op, rows in ops):
                raise ValueError("not a list of (operation, rows)")
        except Exception as exc:  # noqa: BLE001 - any unreadable record is set aside
            bad.append((f"unreadable record: {exc!r}", payload))
            continue
        calls.append(ops)
    with transaction(db):
        try:
            _savepoint(db, lambda: _write(db, calls))
        except Exception:
            culprits = {}  # the calls that fail when written alone (tried and undone)
            for i, ops in enumerate(calls):
                try:
                    _savepoint(db, lambda ops=ops: _write(db, [ops]), keep=False)
                except Exception as exc:  # noqa: BLE001 - whatever the record's rows raise
                    culprits[i] = repr(exc)
            if not culprits:
                raise  # not the records' fault
            bad.extend((reason, calls[i]) for i, reason in culprits.items())
            calls = [ops for i, ops in enumerate(calls) if i not in culprits]
            _write(db, calls)
        now = time.time()
        for reason, record in bad:
            reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")
            db.execute(QUARANTINE, (now, reason, ascii(record)))
    return len(bad)


def _write(db: sqlite3.Connection, calls: Sequence[Sequence[tuple[str, list]]]) -> None:
    """The rows of ``calls``, grouped by operation, in :data:`DEFERRED`'s order."""
    grouped: dict[str, list] = {op: [] for op in DEFERRED}
    for ops in calls:
        for op, rows in ops:
            grouped[op].extend(rows)
    # a decision settled before its row reached SQLite is inserted settled (one row write)
    settle = {did: (status, reward) for reward, status, did in grouped["settle"]}
    grouped["decisions"] = [(*row, *settle.pop(row[0], ("pending", None)))
                            for row in grouped["decisions"]]
    grouped["settle"] = [(reward, status, did) for did, (status, reward) in settle.items()]
    for op, rows in grouped.items():
        if rows:
            db.executemany(DEFERRED[op], rows)


def _savepoint(db: sqlite3.Connection, work, keep: bool = True) -> None:
    """Run ``work()`` inside a savepoint: kept if it succeeds and ``keep``, else undone."""
    db.execute("SAVEPOINT queued")
    try:
        work()
    except BaseException:
        db.execute("ROLLBACK TO queued")
        raise
    finally:
        if not keep:
            db.execute("ROLLBACK TO queued")
        db.execute("RELEASE queued")


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``with transaction(db):`` one write transaction (``BEGIN IMMEDIATE``), committed at
    the end or rolled back on an error; inside one already open, it joins that one."""
    if db.in_transaction:
        yield db
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def connect(path: str | os.PathLike, synchronous: str) -> sqlite3.Connection:
    """A connection with the settings every connection to the store has: ``synchronous``,
    secure deletes, and no checkpoint after a commit (the store's thread runs them)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA secure_delete=ON")
    db.execute("PRAGMA wal_autocheckpoint=0")
    return db


class WriterClient:
    """The store's side of the writer process (see :func:`main`): hands it a full journal and
    waits for its answer. Where it cannot start, cannot be reached, fails or hangs, the client
    warns once, stops it and stays off (``enabled`` False): the store then commits itself."""

    def __init__(self, db_path: str, synchronous: str, lock_path: str,
                 journal_paths: Sequence[str], enabled: bool):
        self.argv = [sys.executable, WRITER_SCRIPT, db_path, synchronous, lock_path,
                     *journal_paths]
        self.enabled = enabled
        self.process: subprocess.Popen | None = None
        self.ready = False  # the process said it started
        self.busy: int | None = None  # the journal the process is committing

    def start(self) -> None:
        """Start the process (if enabled and not running); it readies while calls go on."""
        if self.process is not None or not self.enabled:
            return
        try:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, bufsize=0)  # (for select)
        except OSError as exc:
            self._failed(f"it could not start ({exc})")

    def hand_off(self, index: int, end: int) -> bool:
        """Ask the process to commit journal ``index`` up to offset ``end``; False where no
        started process can be asked (the caller commits itself)."""
        if self.process is None or not self._started():
            return False
        try:
            self.process.stdin.write(f"F {index} {end}\n".encode())
            self.process.stdin.flush()
        except OSError as exc:  # the writer is gone: write here from now on
            self._failed(f"it could not be reached ({exc})")
            return False
        self.busy = index
        return True

    def wait(self) -> int | None:
        """Wait for the journal handed off: its index once committed (for the caller to
        clear), or None where the process failed (the journal keeps its records)."""
        index, self.busy = self.busy, None
        try:
            if select.select([self.process.stdout], [], [], WRITER_TIMEOUT)[0]:
                reply = self.process.stdout.readline()
            else:  # stuck (stopped, or a disk that hangs): it is killed below
                reply = f"E no answer in {WRITER_TIMEOUT:g} s".encode()
        except OSError as exc:
            reply = f"E {exc}".encode()
        if reply == b"D\n":
            return index
        reason = reply.decode(errors="replace").strip()[2:] or "it exited"
        self._failed(f"its group commit failed: {reason}")
        return None

    def stop(self, wait: float = 30.0) -> None:
        """Ask the process to exit (after its transaction); kill it after ``wait`` seconds."""
        proc, self.process, self.ready = self.process, None, False
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.write(b"Q\n")
            proc.stdin.close()
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def _started(self) -> bool:
        """Whether the process has started (without waiting: until then the store commits)."""
        if not self.ready:
            stdout = self.process.stdout
            if not select.select([stdout], [], [], 0)[0]:
                return False  # still starting
            self.ready = stdout.readline() == b"R\n"
            if not self.ready:
                self._failed("it did not start")
        return self.ready

    def _failed(self, why: str) -> None:
        warnings.warn(f"loopwise: the group-commit writer process stopped: {why}; group "
                      "commits run in the engine's own thread from now on", RuntimeWarning,
                      stacklevel=4)
        self.enabled = False
        self.stop(wait=1.0)  # (a killed writer's open transaction rolls back)


def main(argv: Sequence[str]) -> int:
    """The writer process: ``writer.py DB SYNCHRONOUS LOCK JOURNAL...`` (protocol above)."""
    db_path, synchronous, lock_path, *journals = argv
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)  # held until the process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.stderr.write(f"loopwise writer: {lock_path} is held by another writer\n")
        return 1
    db = connect(db_path, synchronous)
    out = sys.stdout.buffer
    out.write(b"R\n")
    out.flush()
    for line in sys.stdin.buffer:
        command = line.split()
        if not command or command[0] != b"F":
            break  # Q, or anything unexpected: stop
        try:
            with open(journals[int(command[1])], "rb") as fh:
                data = fh.read(int(command[2]))
            apply_queued(db, list(read_records(data)))
            reply = b"D\n"
        except Exception as exc:  # the store falls back to writing itself, and says why
            reply = ("E " + repr(exc).replace("\n", " ") + "\n").encode()
        try:
            out.write(reply)
            out.flush()
        except BrokenPipeError:  # the engine is gone (killed): nobody to answer
            break
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
