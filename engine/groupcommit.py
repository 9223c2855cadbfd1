"""The store's queue of group-committed writes: two journals and the writer process.

Each call's writes are one record in the active :class:`~engine.journal.Journal` (durable when
the call returns). Every ``flush_every`` calls the full journal goes to the writer process
(:class:`engine.writer.WriterClient`) while calls go on into the other; without a writer,
:meth:`GroupCommit.flush` commits in this thread. A journal is cleared only once committed.
"""

from __future__ import annotations

import fcntl
import pickle
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from engine.errors import StoreError
from engine.journal import Journal, private_file
from engine.writer import WriterClient, apply_queued

JOURNAL_NAME = "journal"
#: The two journals: calls append to one while the writer process commits the other.
JOURNAL_NAMES = (JOURNAL_NAME, JOURNAL_NAME + ".1")
#: Held by the writer process while it runs (see :mod:`engine.writer`).
WRITER_LOCK_NAME = "LOCK.writer"
#: Seconds a new store waits for a writer left running by a killed engine to finish.
WRITER_WAIT = 30.0


class GroupCommit:
    """The queue of writes under ``data_dir`` on their way into ``db`` (at ``db_path``),
    handed to a writer process (``use_writer``) every ``flush_every`` calls."""

    def __init__(self, db: sqlite3.Connection, data_dir: Path, db_path: Path, synchronous: str,
                 flush_every: int, use_writer: bool):
        self._db = db
        self.journals = [Journal(data_dir / name, fsync=synchronous == "FULL")
                         for name in JOURNAL_NAMES]
        self.active = 0  # the journal calls append to
        # the decision ids each journal holds until it is cleared (see holds_decision)
        self.queued_decisions: list[set[str]] = [set() for _ in self.journals]
        self.n_queued = 0  # calls in the active journal (the journals are the queue)
        self.flush_every = flush_every
        self._start_at = max(1, flush_every // 4)  # calls queued when the writer is started
        self.writer = WriterClient(str(db_path), synchronous, str(data_dir / WRITER_LOCK_NAME),
                                   [str(j.path) for j in self.journals], use_writer)
        self.error: str | None = None  # why the last group commit failed (None: it did not)

    @property
    def pending(self) -> bool:
        """Whether anything is queued or being committed."""
        return self.writer.busy is not None or any(j.end for j in self.journals)

    def append(self, ops: list[tuple[str, list]], decision_ids: Sequence[str] = ()) -> None:
        """Make one call's writes durable in the active journal, queued for SQLite."""
        if decision_ids:
            self.queued_decisions[self.active].update(decision_ids)
        self.journals[self.active].append(pickle.dumps(ops, protocol=pickle.HIGHEST_PROTOCOL))
        self.n_queued = n = self.n_queued + 1
        if n == self._start_at:
            self.writer.start()  # ready by the time the journal is full (if not running)
        if n >= self.flush_every:
            self._hand_off()

    def holds_decision(self, decision_id: str) -> bool:
        """Whether a queued call logs this decision."""
        return any(decision_id in ids for ids in self.queued_decisions)

    def flush(self) -> None:
        """Move every queued write into SQLite: wait for the writer process's transaction,
        then write what the journals still hold (both only after a crash or a failed writer)
        in one transaction here, and clear them."""
        self._await_writer()
        journals = [j for j in self.journals if j.end]
        if not journals:
            return
        try:
            apply_queued(self._db, [p for j in journals for p in j.records()])
        except Exception as exc:
            self.error = f"group commit failed: {exc!r}"
            raise
        self.error = None
        for journal, ids in zip(self.journals, self.queued_decisions, strict=True):
            journal.clear()
            ids.clear()
        self.n_queued = 0

    def close(self) -> None:
        """Flush, stop the writer process and close the journals."""
        self.flush()
        self.writer.stop()
        for journal in self.journals:
            journal.close()

    def _hand_off(self) -> None:
        """Give the full journal to the writer process and switch to the other one; without a
        writer, commit it here."""
        self._await_writer()
        index = self.active
        if not self.writer.hand_off(index, self.journals[index].end):
            self.flush()
            return
        self.n_queued = 0
        self.active = 1 - index

    def _await_writer(self) -> None:
        """Wait for the writer's transaction, if any, then clear its journal (if it failed, the
        journal keeps its records for :meth:`flush`)."""
        if self.writer.busy is None:
            return
        index = self.writer.wait()
        if index is not None:
            self.journals[index].clear()
            self.queued_decisions[index].clear()


def wait_for_writer(path: Path, timeout: float = WRITER_WAIT) -> None:
    """Wait until no writer process (one left by a killed engine) holds ``path``."""
    with private_file(path) as lock:
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
