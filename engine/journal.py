"""Group commit: an append-only journal that makes one-at-a-time writes durable cheaply.

A SQLite commit costs about 100 microseconds on a typical disk, so committing every
``rank`` and every ``reward`` would cap the engine at a few thousand calls per second. The
store instead appends each call's writes to this journal with one ``write`` system call
(durable against the process being killed, as SQLite's WAL with ``synchronous=NORMAL`` is;
with ``fsync=True`` also against a power cut) and moves queued records into SQLite in one
transaction every few hundred calls (see :class:`engine.store.Store`). Reopening the data
directory replays whatever the journal still holds.

Each record is framed as ``length (4 bytes) | CRC-32 (4 bytes) | payload``. A record cut
short by a crash mid-write fails its length or checksum; reading stops there (that call
never returned, so nothing acknowledged is lost) and the tail is discarded.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

_HEADER = struct.Struct("<II")


class Journal:
    """An append-only file of framed records.

    Parameters
    ----------
    path
        The journal file (created if missing).
    fsync
        ``fdatasync`` after every record (survives a power cut; much slower).

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     j = Journal(os.path.join(d, "journal"))
    ...     j.append(b"first"); j.append(b"second")
    ...     before = list(j.records())
    ...     j.clear()
    ...     after = list(j.records())
    ...     j.close()
    >>> before, after
    ([b'first', b'second'], [])
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size

    def append(self, payload: bytes) -> None:
        """Write one record; durable (against a killed process) when this returns."""
        data = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        written = os.write(self._fd, data)
        if written != len(data):  # a short write to a regular file: disk full or similar
            os.ftruncate(self._fd, self._size)
            raise OSError(f"journal {self.path}: short write ({written} of {len(data)} bytes)")
        self._size += written
        if self.fsync:
            os.fdatasync(self._fd)

    def records(self) -> Iterator[bytes]:
        """The complete records from the start, in order; stops at a torn or corrupt tail."""
        with open(self.path, "rb") as fh:
            data = fh.read()
        pos, end = 0, len(data)
        while pos + _HEADER.size <= end:
            length, crc = _HEADER.unpack_from(data, pos)
            start = pos + _HEADER.size
            payload = data[start:start + length]
            if len(payload) != length or zlib.crc32(payload) != crc:
                return
            yield payload
            pos = start + length

    def clear(self) -> None:
        """Drop every record (after they are safely elsewhere)."""
        os.ftruncate(self._fd, 0)
        self._size = 0
        if self.fsync:
            os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
