"""Retention: events, decisions and rewards older than ``retention_days`` (engine clock), and
quarantined records older than that (wall clock: the time they were quarantined), are
deleted at open and on a schedule; the WAL is then truncated, so they leave every file.

Before deleting, every shard is snapshotted and every policy saved, so profiles keep the
decayed aggregates those rows built and policies what they learned from them; a restart
replays only the (kept) log after the snapshots. A decision is kept while it still waits for
its reward (or its activation) or a reward of it is not yet learned; when it goes, its
rewards and its reward event go with it. A reward is kept until its policy has learned and
saved it. Events older than the window are refused at ingest (their event ids could no
longer be recognised as duplicates). The window's start is recorded in ``meta``
(``retained_since``): exports and OPE state the period they cover
(:meth:`engine.storeview.StoreView.describe`).

:class:`Upkeep` also carries an erasure whose WAL truncation an outside reader held up
(:mod:`engine.privacy.erase`): it retries on each engine call until it succeeds.
"""

from __future__ import annotations

import math
import time

from engine import recovery
from engine.errors import ValidationError
from engine.privacy import erase

DAY = 86_400.0
#: Longest wait between two runs of the schedule, in seconds (engine clock).
EVERY = 3600.0
SINCE_KEY = "retained_since"


#: Settled decisions made before the cutoff whose rewards are all learned and saved: they
#: go with their rewards and their reward events (``reward:<decision_id>``), whenever those
#: were recorded (a default reward is recorded when the wait window closes).
_AGED = ("SELECT decision_id FROM decisions WHERE ts < :cut AND status NOT IN ('pending', "
         "'deferred') AND NOT "
         "EXISTS (SELECT 1 FROM rewards r WHERE r.decision_id = decisions.decision_id "
         "AND r.seq > :learned)")


def keep_last_seqs(db) -> None:
    """Record the highest event and reward seqs in ``meta`` (as :meth:`Store.forget` does)
    before rows are deleted: seqs are never reused, even once every row is gone, or a
    restart would hand out seqs that snapshots and saved policies already hold."""
    for table in ("events", "rewards"):
        db.execute("INSERT OR REPLACE INTO meta SELECT 'last_seq:' || ?, CAST(MAX(seq) AS "
                   "TEXT) FROM (SELECT MAX(seq) AS seq FROM " + table + " UNION ALL SELECT "
                   "CAST(value AS INTEGER) FROM meta WHERE key = 'last_seq:' || ?) "
                   "HAVING MAX(seq) IS NOT NULL", (table, table))


def prune(store, cutoff: float, learned_seq: int, quarantine_cutoff: float) -> dict[str, int]:
    """Delete what is older than ``cutoff``: events, rewards learned and saved (``seq <=
    learned_seq``), settled decisions with their rewards and reward events; and quarantined
    records older than ``quarantine_cutoff`` (their raw text may name anyone). Returns the
    counts. Run it after every shard's snapshot and every policy's save."""
    args = {"cut": cutoff, "learned": learned_seq, "q_cut": quarantine_cutoff}
    with store.transaction() as db:
        keep_last_seqs(db)
        counts = {
            "rewards": db.execute(f"DELETE FROM rewards WHERE seq <= :learned AND (ts < :cut "
                                  f"OR decision_id IN ({_AGED}))", args).rowcount,
            "events": db.execute(f"DELETE FROM events WHERE ts < :cut OR (event_id LIKE "
                                 f"'reward:%' AND substr(event_id, 8) IN ({_AGED}))",
                                 args).rowcount,
            "decisions": db.execute(f"DELETE FROM decisions WHERE decision_id IN ({_AGED})",
                                    args).rowcount,
            "quarantine": db.execute("DELETE FROM quarantine WHERE ts < :q_cut", args).rowcount,
        }
        previous = store.get_meta(SINCE_KEY)
        since = cutoff if previous is None else max(cutoff, float(previous))
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (SINCE_KEY, repr(since)))
    return counts


class Upkeep:
    """The engine's privacy chores between calls: the retention schedule and a held erasure.

    Examples
    --------
    >>> import tempfile
    >>> from engine.store import Store
    >>> with tempfile.TemporaryDirectory() as d:
    ...     store = Store(d)
    ...     upkeep = Upkeep(store, retention_days=1.0, save=lambda: None, learned_seq=lambda: 0)
    ...     first = upkeep.retain(now=10 * DAY)
    ...     since = store.get_meta(SINCE_KEY)
    ...     store.close()
    >>> sorted(first), first["wal"], since, upkeep.next_run == 10 * DAY + EVERY
    (['decisions', 'events', 'quarantine', 'rewards', 'wal'], 'truncated', '777600.0', True)
    """

    def __init__(self, store, retention_days: float | None, save, learned_seq):
        self.store = store
        self.save = save  # snapshot every shard and save every policy
        self.learned_seq = learned_seq  # the lowest reward seq every policy has saved
        self.scrub_pending = False
        self.set_window(retention_days)

    def set_window(self, retention_days: float | None) -> None:
        """Keep ``retention_days`` (``None``: everything); a changed window runs at the next
        tick."""
        window = None if retention_days is None else float(retention_days) * DAY
        if window != getattr(self, "window", "unset"):
            self.window = window
            self.every = EVERY if window is None else min(EVERY, window / 24)
            self.next_run = -math.inf

    @property
    def active(self) -> bool:
        """Whether calls must tick (a retention window, or an erasure still held)."""
        return self.window is not None or self.scrub_pending

    def tick(self, now: float) -> None:
        if self.scrub_pending:
            self.scrub_pending = erase.scrub(self.store, timeout=0.0)["wal"] != "truncated"
        if self.window is not None and now >= self.next_run:
            self.retain(now)

    def erased(self, wal: dict) -> None:
        """Note an erasure's WAL result: a held one is retried by :meth:`tick`."""
        self.scrub_pending = self.scrub_pending or wal["wal"] != "truncated"

    def retain(self, now: float) -> dict:
        """Delete what is older than the window (after saving what it built), then truncate
        the WAL. Returns the counts and the WAL's result."""
        self.next_run = now + self.every
        self.save()
        counts = prune(self.store, now - self.window, self.learned_seq(),
                       time.time() - self.window)
        if counts["decisions"]:
            recovery.rows_deleted(self.store)
        wal = erase.scrub(self.store, timeout=0.0)
        self.erased(wal)
        return {**counts, "wal": wal["wal"]}

    def check_events(self, events, now: float) -> None:
        """Refuse events older than the window, naming the first."""
        if self.window is None:
            return
        cutoff = now - self.window
        for i, e in enumerate(events):
            if e.ts < cutoff:
                raise ValidationError(f"events[{i}].ts", f"is older than the retention window "
                                      f"(retention_days; earliest accepted {cutoff!r})", e.ts)
