"""The front door of the HTTP app: every request passes here first, once.

:class:`Front` is the outermost ASGI middleware of the app. In order, for each request it

1. refuses more than ``max_headers`` header lines (431), before anything else is read;
2. finds the route template and the scope it needs (:class:`RouteTable`, built from the
   routes' ``x-scope`` declarations) and calls :meth:`Tokens.authorize` — the one access
   check of every route (401 without a usable token, 403 naming
   the missing scope; Personalizer's routes also take the token as
   ``Ocp-Apim-Subscription-Key``); unknown paths and methods need a valid token too, then answer
   404/405, so nothing about the API is told to strangers;
3. catches any unexpected exception and answers 500, logging the route, the exception's type
   and the code locations only: never its message, which may quote the request body;
4. counts the request in the Prometheus metrics and writes one access-log line (token name,
   method, route template, status, milliseconds). The route template, not the path, is
   logged, so a user id never reaches the log (an erasure leaves no byte behind).

Access-log modes: ``all`` (every request), ``changes`` (erasures and settings changes, which
need the ``admin`` scope, and refused tokens) and ``off``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback

from engine.serve.metrics import Metrics
from engine.serve.tokens import AuthError, Tokens

PUBLIC = "public"  # x-scope of a route that needs no token
PERSONALIZER = "/personalizer/"  # routes that also take Ocp-Apim-Subscription-Key
ACCESS_LOG_MODES = ("all", "changes", "off")
access_log = logging.getLogger("loopwise.access")
error_log = logging.getLogger("loopwise.error")


def error_body(status: int, field: str, reason: str, headers=()) -> tuple[dict, bytes]:
    """An ASGI response start message and body in the API's error shape."""
    body = json.dumps({"error": {"field": field, "reason": reason}}).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()), *headers]}
    return start, body


class RouteTable:
    """Route template and needed scope of a method and path, from the app's routes.

    Each route declares its scope as ``openapi_extra={"x-scope": ...}`` (``PUBLIC`` for
    none); ``extra`` gives scopes of routes without one (the OpenAPI spec's). A route that
    declares nothing is an error, so no route is ever left open by mistake.

    Examples
    --------
    >>> from fastapi import FastAPI
    >>> app = FastAPI(openapi_url=None)
    >>> @app.get("/v1/things/{thing}", openapi_extra={"x-scope": "read"})
    ... async def thing(thing: str): ...
    >>> @app.delete("/v1/things/{thing}", openapi_extra={"x-scope": "admin"})
    ... async def drop(thing: str): ...
    >>> table = RouteTable(app.routes)
    >>> table.match("GET", "/v1/things/42"), table.match("DELETE", "/v1/things/42")
    (('/v1/things/{thing}', 'read'), ('/v1/things/{thing}', 'admin'))
    >>> table.match("POST", "/v1/things/42"), table.match("GET", "/nowhere")
    (('/v1/things/{thing}', None), ('unmatched', None))
    """

    def __init__(self, routes, extra: dict[str, str] | None = None):
        self._exact: dict[str, dict[str, str]] = {}
        self._patterns: dict[str, tuple[re.Pattern, dict[str, str]]] = {}
        for route in routes:
            path = route.path
            scope = (getattr(route, "openapi_extra", None) or {}).get("x-scope")
            scope = scope or (extra or {}).get(path)
            if scope is None:
                raise ValueError(f"route {path}: declares no scope (openapi_extra x-scope)")
            if "{" in path:
                methods = self._patterns.setdefault(path, (route.path_regex, {}))[1]
            else:
                methods = self._exact.setdefault(path, {})
            methods.update((m, scope) for m in route.methods or ())

    def match(self, method: str, path: str) -> tuple[str, str | None]:
        """(route template, scope); scope None where any valid token will do (a path or
        method that no route serves: the app answers 404 or 405)."""
        methods = self._exact.get(path)
        if methods is not None:
            return path, methods.get(method)
        for template, (regex, by_method) in self._patterns.items():
            if regex.match(path):
                return template, by_method.get(method)
        return "unmatched", None


class Front:
    """ASGI middleware: header count limit, access check, 500s, metrics and access log."""

    def __init__(self, app, tokens: Tokens, routes: RouteTable, metrics: Metrics,
                 max_headers: int = 100, access_log: str = "all"):
        if access_log not in ACCESS_LOG_MODES:
            raise ValueError(f"access_log: one of {ACCESS_LOG_MODES} (got {access_log!r})")
        self.app = app
        self.tokens = tokens
        self.routes = routes
        self.metrics = metrics
        self.max_headers = max_headers
        self.access_log = access_log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        method = scope["method"]
        template, needed = self.routes.match(method, scope["path"])
        status, who = [500, False], "-"  # status, response started

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[:] = message["status"], True
            await send(message)

        try:
            if len(scope["headers"]) > self.max_headers:
                raise _Refused(431, "headers", f"at most {self.max_headers} header lines")
            if needed != PUBLIC:
                who = self._authorize(scope["headers"], needed, template).name
            await self.app(scope, receive, send_wrapper)
        except _Refused as exc:
            who = exc.who or who
            await _answer(send_wrapper, exc.status, exc.field, exc.reason, exc.headers)
        except Exception as exc:  # noqa: BLE001 - the last line: log safely, answer 500
            frames = " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}"
                                 for f in reversed(traceback.extract_tb(exc.__traceback__)))
            error_log.error("500 on %s %s: %s at %s", method, template, type(exc).__name__,
                            frames)
            if not status[1]:
                await _answer(send_wrapper, 500, "server", "internal error (logged)")
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.requests.labels(template, method, str(status[0])).inc()
            self.metrics.latency.labels(template).observe(elapsed)
            if self.access_log == "all" or (self.access_log == "changes" and (
                    needed == "admin" or status[0] in (401, 403))):
                access_log.info("token=%s method=%s route=%s status=%d ms=%.2f", who,
                                method, template, status[0], elapsed * 1e3)

    def _authorize(self, headers, needed: str | None, template: str):
        authorization = key = None
        for name, value in headers:  # the first of each counts
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"ocp-apim-subscription-key" and key is None:
                key = value
        if authorization is None and key is not None and template.startswith(PERSONALIZER):
            authorization = b"Bearer " + key  # Personalizer's header: the same token check
        try:
            return self.tokens.authorize(authorization, needed)
        except AuthError as err:
            extra = [(b"www-authenticate", b"Bearer")] if err.status == 401 else []
            raise _Refused(err.status, "authorization", err.reason, extra, err.who) from None


async def _answer(send, status: int, field: str, reason: str, headers=()) -> None:
    start, body = error_body(status, field, reason, headers)
    await send(start)
    await send({"type": "http.response.body", "body": body})


class _Refused(Exception):
    def __init__(self, status: int, field: str, reason: str, headers=(), who: str | None = None):
        self.status, self.field, self.reason, self.headers = status, field, reason, headers
        self.who = who  # the token's name where it was known (a 403)
