"""Keyed pseudonyms for user ids: HMAC-SHA256 under a key kept outside the data directory.

With a key configured (``pseudonym_key_file`` in the engine's settings, or the environment
variable ``LOOPWISE_PSEUDONYM_KEY_FILE``), the engine replaces each user id by its pseudonym
at the boundary, before anything is written; without the key, nobody holding only the data
directory can compute a pseudonym from an id or test whether an id is present. The key file
must lie outside the data directory (a copy of the directory must not carry its key); a key
file inside it is refused. Without a key the engine stores raw ids and says so once.

Moving a directory to a new key: :mod:`engine.privacy.rekey`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from pathlib import Path

from engine.errors import StoreError, ValidationError

ENV = "LOOPWISE_PSEUDONYM_KEY_FILE"
#: Shortest key accepted, in bytes (after stripping surrounding whitespace).
MIN_KEY_BYTES = 16
PREFIX = "ps_"
log = logging.getLogger("loopwise.privacy")
_warned = False


class Pseudonyms:
    """HMAC-SHA256 pseudonyms of user ids under ``key``: ``ps_`` and 32 hex digits (128 bits).

    Examples
    --------
    >>> p = Pseudonyms(b"0123456789abcdef0123456789abcdef")
    >>> p("alice")
    'ps_433deb45467e4e53dbaba594c88bc3a2'
    >>> p("alice") == p("alice"), p("alice") == Pseudonyms(b"another key of 16+ bytes")("alice")
    (True, False)
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes):
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            raise ValidationError("pseudonym_key_file",
                                  f"the key must hold at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def __call__(self, user_id: str) -> str:
        digest = hmac.new(self._key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return PREFIX + digest[:32]

    def __repr__(self) -> str:  # never shows the key
        return "Pseudonyms(<key>)"

    def __reduce__(self):  # a Ray actor may need it; the key travels, it is never written
        return (Pseudonyms, (self._key,))

    @classmethod
    def from_file(cls, path: str | os.PathLike, data_dir: str | os.PathLike) -> Pseudonyms:
        """The pseudonyms under the key in ``path``, which must lie outside ``data_dir``."""
        key_path = Path(path).expanduser()
        if not key_path.is_file():
            raise ValidationError("pseudonym_key_file", "no such file", str(path))
        if _inside(key_path, Path(data_dir)):
            raise ValidationError(
                "pseudonym_key_file", "must be outside the data directory (a copy of the "
                f"directory would carry its key); move it out of {str(data_dir)!r}", str(path))
        key = key_path.read_bytes().strip()
        if len(key) < MIN_KEY_BYTES:
            raise ValidationError("pseudonym_key_file", f"the key must hold at least "
                                  f"{MIN_KEY_BYTES} bytes (make one: loopwise pseudonym-key "
                                  "--out FILE)", str(path))
        return cls(key)


def _inside(path: Path, directory: Path) -> bool:
    """Whether ``path`` (symbolic links followed) lies in ``directory``, or is a hard link
    to a file there."""
    real, root = path.resolve(), directory.expanduser().resolve()
    if real.is_relative_to(root):
        return True
    st = real.stat()
    if st.st_nlink > 1 and root.is_dir():
        return any(f.stat().st_ino == st.st_ino and f.stat().st_dev == st.st_dev
                   for f in root.rglob("*") if f.is_file())
    return False


def key_file(configured: str | os.PathLike | None) -> str | None:
    """The key file: ``configured`` (the engine setting) or ``$LOOPWISE_PSEUDONYM_KEY_FILE``."""
    if configured is not None:
        return os.fspath(configured)
    return os.environ.get(ENV) or None


def open_pseudonyms(configured: str | os.PathLike | None,
                    data_dir: str | os.PathLike) -> Pseudonyms | None:
    """The pseudonyms the settings ask for, or ``None`` (raw ids; logged once per process)."""
    global _warned
    path = key_file(configured)
    if path is None:
        if not _warned:
            _warned = True
            log.warning("no pseudonym key is set (pseudonym_key_file or %s): user ids are "
                        "stored as given", ENV)
        return None
    return Pseudonyms.from_file(path, data_dir)


#: The id whose pseudonym a data directory records, to recognise its key (not the key).
KEY_CHECK = "\x00loopwise pseudonym key check"
_CHECK_META = "pseudonym_key_check"


def check_directory(store, pseudonyms: Pseudonyms | None) -> None:
    """Refuse to mix ids: a data directory written under one key (or with raw ids) is only
    reopened the same way. The directory records the pseudonym of :data:`KEY_CHECK`, from
    which the key cannot be recovered."""
    check = None if pseudonyms is None else pseudonyms(KEY_CHECK)
    recorded = store.get_meta(_CHECK_META)
    if recorded is None and not store.db.execute(
            "SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM decisions)").fetchone()[0]:
        record_key(store, pseudonyms)  # a new directory: written as it is opened
        return
    recorded = None if recorded is None else json.loads(recorded)  # None: raw ids
    if recorded == check:
        return
    if recorded is None:
        why = "holds raw user ids; open it without a key (or start a new data directory)"
    elif check is None:
        why = (f"holds pseudonyms; set pseudonym_key_file or {ENV} to the key it was "
               "written with")
    else:
        why = "was written with another key; use that key (or re-key the directory)"
    raise StoreError(f"pseudonym_key_file: the data directory {why}")


def record_key(store, pseudonyms: Pseudonyms | None) -> None:
    """Record which key (or none) the directory is now written with (after re-keying)."""
    check = None if pseudonyms is None else pseudonyms(KEY_CHECK)
    store.set_meta(_CHECK_META, json.dumps(check))


def new_key(path: str | os.PathLike) -> None:
    """Write a new random key (32 bytes, hex) to ``path``, readable by its owner only;
    refuse to overwrite a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
