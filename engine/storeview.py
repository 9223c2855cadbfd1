"""A read-only, consistent view of a data directory's store, safe beside a running engine.

:class:`StoreView` opens ``loopwise.sqlite`` with SQLite's ``mode=ro`` URI and reads inside one
read transaction: WAL lets it read while the engine writes, and every query sees the same
snapshot (the last commit when the view opened). It takes no lock of the engine's (``LOCK``,
``LOCK.writer``), replays no journal and never creates the data directory or the database.
Where no engine has the database open (no ``-wal`` file beside it) it reads the file as
``immutable`` so that it creates no ``-wal``/``-shm`` either, and refuses at :meth:`close` if an
engine opened the directory while it read (the snapshot could then be torn).

What the engine acknowledged but still holds in its group-commit journal
(:mod:`engine.groupcommit`) is not in SQLite yet, so not in the view: :meth:`coverage` says what
the view covers, "as of the last commit".
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from engine.errors import StoreError

DB_NAME = "loopwise.sqlite"


class StoreReads:
    """The reads a store and a view of it answer alike, from ``self.db``."""

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def load_policy(self, variant: str) -> tuple[int, int, bytes] | None:
        return self.db.execute("SELECT reward_seq, version, blob FROM policy WHERE variant = ?",
                               (variant,)).fetchone()

    def load_snapshot(self, shard: int) -> tuple[int, bytes] | None:
        return self.db.execute("SELECT seq, blob FROM snapshots WHERE shard = ?",
                               (shard,)).fetchone()


class StoreView(StoreReads):
    """Read-only snapshot of ``<data_dir>/loopwise.sqlite``: ``db``, the reads of
    :class:`StoreReads`, and :meth:`coverage`.

    Examples
    --------
    >>> import tempfile
    >>> from engine.store import Store
    >>> with tempfile.TemporaryDirectory() as d:
    ...     store = Store(d)                 # the engine's store, still open
    ...     store.set_meta("greeting", "hi")
    ...     view = StoreView(d)              # reads beside it: no lock, nothing written
    ...     got = view.get_meta("greeting"), view.coverage()["decisions"]
    ...     view.close(); store.close()
    >>> got
    ('hi', 0)
    """

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        if not self.path.is_file():
            raise StoreError(f"{str(data_dir)!r} is not an engine data directory (it has no "
                             f"{DB_NAME}); readers never create one")
        self._wal = Path(f"{self.path}-wal")
        # no -wal: no engine has the database open, and mode=ro would create -wal and -shm
        self.immutable = not self._wal.exists()
        self._stat = _stat(self.path)
        mode = "immutable=1" if self.immutable else "mode=ro"
        uri = f"file:{quote(str(self.path.resolve()))}?{mode}"
        try:
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("BEGIN")  # one read transaction: every query sees one snapshot
            self.db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()  # pins the snapshot
        except sqlite3.Error as err:
            raise StoreError(f"{str(data_dir)!r}: cannot read {DB_NAME} ({err})") from None

    def coverage(self) -> dict:
        """What the snapshot holds: decision counts (all, with a reward), the last decision's
        time, and the highest event and reward ``seq`` committed."""
        n, rewarded, last_ts = self.db.execute(
            "SELECT COUNT(*), TOTAL(status != 'pending'), MAX(ts) FROM decisions").fetchone()
        events = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        rewards = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM rewards").fetchone()[0]
        since = self.get_meta("retained_since")  # engine.privacy.retention's cut, if any
        return {"as_of": "last commit", "decisions": int(n), "rewarded": int(rewarded),
                "last_decision_ts": last_ts, "event_seq": int(events),
                "reward_seq": int(rewards), "engine_open": not self.immutable,
                "retained_since": None if since is None else float(since)}

    def describe(self) -> str:
        """:meth:`coverage` as one line for the terminal."""
        c = self.coverage()
        when = "no decisions" if c["last_decision_ts"] is None else "decisions to " + \
            datetime.fromtimestamp(c["last_decision_ts"], tz=timezone.utc).isoformat(
                timespec="seconds")
        return (f"read-only view of {str(self.data_dir)!r} as of the last commit: {when} "
                f"({c['decisions']} decisions, {c['rewarded']} with a reward; events to seq "
                f"{c['event_seq']}, rewards to seq {c['reward_seq']}); records acknowledged "
                "but still in the engine's group-commit journal are not included"
                + ("" if c["retained_since"] is None else "; rows before t="
                   f"{c['retained_since']:g} were deleted by retention (retention_days)"))

    def close(self) -> None:
        """End the read; refuse if an engine opened the directory during an immutable read."""
        if self.db is None:
            return
        self.db.close()
        self.db = None
        if self.immutable and (self._wal.exists() or _stat(self.path) != self._stat):
            raise StoreError(f"{str(self.data_dir)!r}: an engine opened the data directory "
                             "while it was read; run the command again")


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size
