"""Named bearer tokens with scopes, kept as SHA-256 digests, re-read when their file changes.

A token file is YAML: each name maps to the SHA-256 of its token (never the token itself)
and its scopes::

    tokens:
      shop-frontend: {sha256: 9f86d0..., scopes: [rank], created: "2026-11-26T14:00:00Z"}
      analyst: {sha256: 60303a..., scopes: [read], created: "2026-11-26T14:05:00Z"}

Scopes: ``rank`` (rank, reward, events), ``read`` (profiles, reports, metrics, the OpenAPI
spec), ``admin`` (erasure, settings); a scope grants only itself. The static token
(``LOOPWISE_TOKEN``/``--token``) holds every scope under the name ``static``. The file is
looked at at most once a second and re-read when its size, mtime or inode changed, so
tokens rotate without a restart; a file that cannot be read leaves the last good set in
force (logged), a file that is gone revokes its tokens. ``loopwise token add|list|remove``
(:mod:`experiments.tokens`) manages the file (``add`` prints the new token once).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import time
from datetime import datetime, timezone
from typing import NamedTuple

import yaml

SCOPES = ("rank", "read", "admin")
STATIC = "static"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CHECK_EVERY = 1.0  # seconds between looks at the token file
log = logging.getLogger("loopwise.tokens")


class Identity(NamedTuple):
    """Who presented a token: its name (safe to log) and its scopes."""

    name: str
    scopes: frozenset[str]


class AuthError(Exception):
    """A refused request: 401 (no usable token) or 403 (a token without the scope)."""

    def __init__(self, status: int, reason: str, who: str | None = None):
        super().__init__(reason)
        self.status, self.reason, self.who = status, reason, who  # who: the name, on a 403


def digest(token: str) -> str:
    """The hex SHA-256 of a token, as kept in the token file."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class Tokens:
    """The tokens a server accepts: a static ``token`` holding every scope
    (``LOOPWISE_TOKEN``) and/or a ``token_file`` (see the module docstring). ``clock``
    (seconds, monotonic) paces the looks at the file.

    Examples
    --------
    >>> tokens = Tokens("s3cret")
    >>> who = tokens.authorize(b"Bearer s3cret", "admin")
    >>> who.name, sorted(who.scopes)
    ('static', ['admin', 'rank', 'read'])
    >>> tokens.authorize(b"Bearer nope", "rank")
    Traceback (most recent call last):
    ...
    engine.serve.tokens.AuthError: unknown bearer token
    """

    def __init__(self, token: str | None = None, token_file: str | None = None,
                 clock=time.monotonic):
        self.token_file = token_file
        self.clock = clock
        if not token and not token_file:
            raise ValueError("token: give a static token (LOOPWISE_TOKEN, --token) or a "
                             "token file (LOOPWISE_TOKEN_FILE, --token-file), or both")
        self._static = digest(token) if token else None
        # the file is read now, so that its errors surface at start
        self._by_digest = _identities(read_file(token_file)) if token_file else {}
        self._stamp = _stamp(token_file) if token_file else None
        self._checked = clock() if token_file else -float("inf")

    def authenticate(self, authorization: bytes | None) -> Identity:
        """The identity behind an ``Authorization`` header value; :class:`AuthError` 401
        when there is none or it is unknown. Tokens are compared as digests."""
        if not authorization:
            raise AuthError(401, "missing bearer token")
        scheme, _, credentials = authorization.partition(b" ")
        credentials = credentials.strip()
        if scheme.lower() != b"bearer" or not credentials:
            raise AuthError(401, "expected 'Authorization: Bearer <token>'")
        seen = digest(credentials.decode("latin-1"))
        if self._static is not None and hmac.compare_digest(seen, self._static):
            return Identity(STATIC, frozenset(SCOPES))
        if self.token_file:
            self._refresh()
        identity = self._by_digest.get(seen)
        if identity is None:
            raise AuthError(401, "unknown bearer token")
        return identity

    def authorize(self, authorization: bytes | None, scope: str | None) -> Identity:
        """:meth:`authenticate`, then 403 unless the token holds ``scope`` (None: any
        valid token will do). The one access check of every route."""
        identity = self.authenticate(authorization)
        if scope is not None and scope not in identity.scopes:
            raise AuthError(403, f"token {identity.name!r} lacks the scope {scope!r}",
                            identity.name)
        return identity

    def _refresh(self) -> None:
        now = self.clock()
        if now - self._checked < CHECK_EVERY:
            return
        self._checked = now
        stamp = _stamp(self.token_file)
        if stamp == self._stamp:
            return
        if stamp is None:
            log.error("token file %s is gone: its tokens are revoked", self.token_file)
            self._by_digest, self._stamp = {}, None
            return
        try:
            self._by_digest = _identities(read_file(self.token_file))
        except ValueError as err:
            log.error("token file %s not reloaded, the previous tokens stay: %s",
                      self.token_file, err)
        else:
            log.warning("token file %s reloaded: %d tokens", self.token_file,
                        len(self._by_digest))
        self._stamp = stamp


def _stamp(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _identities(entries: dict) -> dict[str, Identity]:
    return {e["sha256"]: Identity(name, frozenset(e["scopes"])) for name, e in entries.items()}


def read_file(path: str) -> dict[str, dict]:
    """The entries of a token file (name -> {sha256, scopes, created}); a file that does
    not exist has none. Raises ValueError naming what is wrong."""
    try:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"token file {path!r}: cannot read it ({type(err).__name__})") from None
    entries = loaded.get("tokens") if isinstance(loaded, dict) else None
    if not isinstance(entries, dict):
        raise ValueError(f"token file {path!r}: must hold a 'tokens:' mapping of names")
    for name, entry in entries.items():
        where = f"token file {path!r}: tokens.{name}"
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"{where}: a name is 1-64 letters, digits, '_', '.' or '-'")
        if not isinstance(entry, dict) or not re.fullmatch(r"[0-9a-f]{64}",
                                                           str(entry.get("sha256", ""))):
            raise ValueError(f"{where}: needs sha256: the token's hex SHA-256 digest")
        scopes = entry.get("scopes")
        if not isinstance(scopes, list) or not scopes or not set(scopes) <= set(SCOPES):
            raise ValueError(f"{where}: scopes must be a non-empty list of {list(SCOPES)}")
    return entries


def write_file(path: str, entries: dict[str, dict]) -> None:
    """Replace the token file atomically (readable by its owner only)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tokens-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# loopwise tokens: SHA-256 digests only; manage with `loopwise token`\n")
            yaml.safe_dump({"tokens": entries}, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def add(path: str, name: str, scopes: list[str]) -> str:
    """Add a token called ``name`` with ``scopes`` to the file; returns the new token (the
    only time it exists in clear)."""
    if not NAME.fullmatch(name):
        raise ValueError(f"name: 1-64 letters, digits, '_', '.' or '-' (got {name!r})")
    if not scopes or not set(scopes) <= set(SCOPES):
        raise ValueError(f"scopes: choose from {list(SCOPES)} (got {scopes!r})")
    entries = read_file(path)
    if name in entries:
        raise ValueError(f"name: {name!r} exists; remove it first or pick another name")
    token = "lw_" + secrets.token_urlsafe(32)
    entries[name] = {"sha256": digest(token), "scopes": sorted(set(scopes)),
                     "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    write_file(path, entries)
    return token


def remove(path: str, name: str) -> bool:
    """Remove the token called ``name``; False if there was none."""
    entries = read_file(path)
    if entries.pop(name, None) is None:
        return False
    write_file(path, entries)
    return True
