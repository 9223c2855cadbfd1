"""Group commit's journal (:mod:`engine.groupcommit`): a preallocated file (a full disk fails
the append that grows it) mapped into memory, so an append is a copy into the page cache,
which outlives the process; with ``fsync=True`` each record is also synced to disk.

A record is ``length (4 bytes) | CRC-32 (4 bytes) | payload``; zeros follow the last one.
Reading stops at a zero length, a record cut short (a crash mid-copy: that call never
returned) or a bad checksum. Clearing zeroes the records (no copy of forgotten data stays).
"""

from __future__ import annotations

import mmap
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

_HEADER = struct.Struct("<II")
_MIN_SIZE = 1 << 20  # mapped bytes at least (a few hundred calls' records at K=20)


class Journal:
    """An append-only file of framed records.

    Parameters
    ----------
    path
        The journal file (created if missing).
    fsync
        Sync every record to disk (survives a power cut; much slower).

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
        self._fd = private_fd(self.path)
        self.end = self._end_of_records()  # offset just past the last record (0: empty)
        if os.fstat(self._fd).st_size > self.end:  # a torn or corrupt tail: cut it off
            os.ftruncate(self._fd, self.end)
        self._map: mmap.mmap | None = None
        try:
            self._reserve(max(_MIN_SIZE, self.end))
        except BaseException:
            os.close(self._fd)
            raise

    def append(self, payload: bytes) -> None:
        """Write one record; durable (against a killed process) when this returns."""
        if not payload:
            raise ValueError("journal records must not be empty (a zero length ends the file)")
        end = self.end + _HEADER.size + len(payload)
        if end >= len(self._map):  # (one zero header always stays after the last record)
            self._reserve(2 * end)
        start = self.end
        self._map[start:end] = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        self.end = end
        if self.fsync:
            first = start - start % mmap.PAGESIZE
            self._map.flush(first, end - first)

    def records(self) -> Iterator[bytes]:
        """The complete records, in order (read from the mapping)."""
        return read_records(self._map[:self.end])

    def clear(self) -> None:
        """Drop every record (after they are safely elsewhere): their bytes become zeros."""
        if self.end:
            self._map[:self.end] = bytes(self.end)
            if self.fsync:
                self._map.flush(0, self.end)
        self.end = 0

    def close(self) -> None:
        """Unmap and close; the file keeps exactly its records (none: an empty file)."""
        if self._fd < 0:
            return
        self._map.close()
        os.ftruncate(self._fd, self.end)
        os.close(self._fd)
        self._fd = -1

    def _end_of_records(self) -> int:
        """Offset just past the last complete record already in the file."""
        with open(self.path, "rb") as fh:
            return max((start + length for start, length in _frames(fh.read())), default=0)

    def _reserve(self, size: int) -> None:
        """Grow the file to at least ``size`` reserved bytes and map all of it."""
        size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(self._fd, 0, size)  # blocks reserved now: no fault on a full disk
        else:  # (macOS: a sparse file; a full disk would fault on first touch instead)
            os.ftruncate(self._fd, max(size, os.fstat(self._fd).st_size))
        if self.fsync:
            os.fsync(self._fd)  # the new length too
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self._fd, size)


def read_records(data: bytes) -> Iterator[bytes]:
    """The payloads of the complete records at the start of ``data`` (a journal's bytes)."""
    for start, length in _frames(data):
        yield data[start:start + length]


def _frames(data: bytes) -> Iterator[tuple[int, int]]:
    """(payload start, payload length) of each complete record in ``data``, in order."""
    pos, end = 0, len(data)
    while pos + _HEADER.size <= end:
        length, crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        if length == 0 or start + length > end or zlib.crc32(data[start:start + length]) != crc:
            return
        yield start, length
        pos = start + length


def private_dir(path: Path) -> None:
    """Create ``path`` (the data directory) readable by its owner only (0700), or make it so."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        try:
            os.chmod(path, 0o700)
        except OSError as exc:
            warnings.warn(f"loopwise: cannot make {str(path)!r} private (0700): {exc}",
                          RuntimeWarning, stacklevel=3)


def private_fd(path: str | os.PathLike) -> int:
    """Open (or create) ``path`` read-write, readable by its owner only (0600, made so)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return fd


def private_file(path: str | os.PathLike):
    """:func:`private_fd` as a file object."""
    return os.fdopen(private_fd(path), "r+")
