"""Console sign-in sessions: a cookie holding a server-side session id, never the token.

Signing in (``POST /ui/login``) checks the service token with :class:`Tokens` and keeps it in
this process's memory under a random 256-bit session id; the browser gets only that id, in
an ``HttpOnly; SameSite=Strict`` cookie (``Secure`` over TLS). Why an id and not the token:
the long-lived API token never sits in a browser or its cookie jar, signing out revokes the
session on the server at once, and a session lasts at most :data:`LIFETIME`. The token stays
the credential: :class:`engine.serve.front.Front` turns a session id back into
``Bearer <token>`` and runs its one access check, so the session has exactly the token's
scopes, and a token removed from the token file stops working in the console too. A restart
forgets every session (people sign in again).

Cross-site request forgery: ``SameSite=Strict`` keeps the cookie off requests other sites
start; on top, a request authenticated by the cookie with a method that changes state must
carry the session's CSRF token in ``X-CSRF-Token`` and an ``Origin`` naming this host.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

COOKIE = "loopwise_session"
LIFETIME = 12 * 3600.0  # seconds a session lasts after sign-in
MAX_SESSIONS = 10_000  # the oldest go first beyond this
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class CsrfError(Exception):
    """A cookie-authenticated request that changes state without the CSRF proofs."""


class Sessions:
    """Session id -> (token, CSRF token, expiry), in memory, thread-safe.

    Examples
    --------
    >>> s = Sessions(clock=lambda: 0.0)
    >>> sid, csrf = s.open("s3cret")
    >>> headers = [(b"cookie", f"{COOKIE}={sid}".encode()), (b"host", b"127.0.0.1:8080")]
    >>> s.credential(headers, "GET")
    b'Bearer s3cret'
    >>> s.credential(headers, "DELETE")
    Traceback (most recent call last):
    ...
    engine.serve.sessions.CsrfError: a console request that changes state needs the session's X-CSRF-Token header
    >>> ok = headers + [(b"x-csrf-token", csrf.encode()), (b"origin", b"http://127.0.0.1:8080")]
    >>> s.credential(ok, "DELETE")
    b'Bearer s3cret'
    >>> s.close(sid); s.credential(headers, "GET") is None
    True
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._by_id: dict[str, tuple[str, str, float]] = {}
        self._lock = threading.Lock()

    def open(self, token: str) -> tuple[str, str]:
        """A new session for a checked ``token``: (session id, CSRF token)."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._lock:
            if len(self._by_id) >= MAX_SESSIONS:  # dicts keep insertion order: oldest first
                del self._by_id[next(iter(self._by_id))]
            self._by_id[sid] = (token, csrf, self.clock() + LIFETIME)
        return sid, csrf

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)

    def csrf(self, sid: str | None) -> str | None:
        entry = self._live(sid)
        return None if entry is None else entry[1]

    def _live(self, sid: str | None) -> tuple[str, str, float] | None:
        with self._lock:
            entry = self._by_id.get(sid or "")
            if entry is not None and entry[2] <= self.clock():
                del self._by_id[sid]
                return None
        return entry

    def credential(self, headers, method: str) -> bytes | None:
        """The ``Authorization`` value a request's session cookie stands for (None: no live
        session); :class:`CsrfError` when ``method`` changes state without the proofs."""
        entry = self._live(session_id(headers))
        if entry is None:
            return None
        if method not in SAFE_METHODS:
            sent = header(headers, b"x-csrf-token")
            if not sent or not hmac.compare_digest(sent.encode("latin-1"), entry[1].encode()):
                raise CsrfError("a console request that changes state needs the session's "
                                "X-CSRF-Token header")
            if not same_origin(headers):
                raise CsrfError("Origin must name this host")
        return b"Bearer " + entry[0].encode("latin-1")


def header(headers, name: bytes) -> str | None:
    value = next((v for k, v in headers if k == name), None)
    return None if value is None else value.decode("latin-1")


def session_id(headers) -> str | None:
    """The session id in a request's ``Cookie`` header, if any."""
    raw = header(headers, b"cookie")
    if not raw:
        return None
    try:
        jar = SimpleCookie(raw)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return None if morsel is None else morsel.value


def same_origin(headers) -> bool:
    """Whether the ``Origin`` header names the host the request was sent to."""
    origin, host = header(headers, b"origin"), header(headers, b"host")
    return bool(origin and host) and urlsplit(origin).netloc == host
