"""The front door of the HTTP app: every request passes :class:`Front` first, once.

In order: more than ``max_headers`` header lines are refused (431); the route template and
its scope are found (:class:`RouteTable`) and :meth:`Tokens.authorize` checks the token,
the one access check of every route (401; 403 naming the missing scope; Personalizer's routes also take
the token as ``Ocp-Apim-Subscription-Key``; unknown paths and
methods need a valid token too, so strangers learn nothing of the API); an unexpected
exception answers 500, logged with its type and code locations only (its message may quote
the body); the request is counted and access-logged by route template, never by path, so
no user id is logged. Access-log modes: ``all``, ``changes`` (``admin``-scope requests and
refused tokens), ``off``.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from urllib.parse import quote

from starlette.responses import JSONResponse, RedirectResponse

from engine.serve.metrics import Metrics
from engine.serve.sessions import CsrfError, Sessions
from engine.serve.tokens import AuthError, Tokens

PUBLIC = "public"  # x-scope of a route that needs no token
PERSONALIZER = "/personalizer/"  # routes that also take Ocp-Apim-Subscription-Key
ACCESS_LOG_MODES = ("all", "changes", "off")
access_log = logging.getLogger("loopwise.access")
error_log = logging.getLogger("loopwise.error")


def error_response(status: int, field: str, reason: str, headers=None) -> JSONResponse:
    """An answer in the API's error shape, ``{"error": {"field", "reason"}}`` (a FastAPI
    route returns it; an ASGI middleware calls it with ``(scope, receive, send)``)."""
    return JSONResponse({"error": {"field": field, "reason": reason}}, status_code=status,
                        headers=headers)


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
        self._by_path: dict[str, tuple[re.Pattern, dict[str, str]]] = {}
        for route in routes:
            path = route.path
            scope = (getattr(route, "openapi_extra", None) or {}).get("x-scope")
            scope = scope or (extra or {}).get(path)
            if scope is None:
                raise ValueError(f"route {path}: declares no scope (openapi_extra x-scope)")
            methods = self._by_path.setdefault(path, (route.path_regex, {}))[1]
            methods.update((m, scope) for m in route.methods or ())

    def match(self, method: str, path: str) -> tuple[str, str | None]:
        """(route template, scope); scope None where any valid token will do (a path or
        method that no route serves: the app answers 404 or 405)."""
        for template, (regex, by_method) in self._by_path.items():
            if regex.match(path):
                return template, by_method.get(method)
        return "unmatched", None


class Front:
    """ASGI middleware: header count limit, access check, 500s, metrics and access log."""

    def __init__(self, app, tokens: Tokens, routes: RouteTable, metrics: Metrics,
                 max_headers: int = 100, access_log: str = "all",
                 sessions: Sessions | None = None):
        if access_log not in ACCESS_LOG_MODES:
            raise ValueError(f"access_log: one of {ACCESS_LOG_MODES} (got {access_log!r})")
        self.app, self.tokens, self.routes, self.metrics = app, tokens, routes, metrics
        self.max_headers, self.access_log = max_headers, access_log
        self.sessions = sessions  # the console's sign-in cookies stand for their tokens

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

        async def refuse(code: int, field: str, reason: str, headers=None) -> None:
            await error_response(code, field, reason, headers)(scope, receive, send_wrapper)

        try:
            if len(scope["headers"]) > self.max_headers:
                return await refuse(431, "headers", f"at most {self.max_headers} header lines")
            if needed != PUBLIC:
                try:
                    auth = _credential(scope["headers"], template)
                    if auth is None and self.sessions is not None:  # the console's cookie
                        auth = self.sessions.credential(scope["headers"], method)
                    identity = self.tokens.authorize(auth, needed)
                except CsrfError as err:
                    return await refuse(403, "csrf", str(err))
                except AuthError as err:
                    who = err.who or who
                    if err.status == 401 and method == "GET" and scope["path"].startswith("/ui"):
                        target = "/ui/login?next=" + quote(scope["path"], safe="/")
                        return await RedirectResponse(target, 303)(scope, receive, send_wrapper)
                    return await refuse(err.status, "authorization", err.reason,
                                        {"www-authenticate": "Bearer"} if err.status == 401 else None)
                who = identity.name
                scope.setdefault("state", {})["identity"] = identity  # for the console
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # noqa: BLE001 - the last line: log safely, answer 500
            frames = " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}"
                                 for f in reversed(traceback.extract_tb(exc.__traceback__)))
            error_log.error("500 on %s %s: %s at %s", method, template, type(exc).__name__,
                            frames)
            if not status[1]:
                await refuse(500, "server", "internal error (logged)")
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.requests.labels(template, method, str(status[0])).inc()
            self.metrics.latency.labels(template).observe(elapsed)
            if self.access_log == "all" or (self.access_log == "changes" and (
                    needed == "admin" or status[0] in (401, 403))):
                access_log.info("token=%s method=%s route=%s status=%d ms=%.2f", who,
                                method, template, status[0], elapsed * 1e3)


def _credential(headers, template: str) -> bytes | None:
    """The request's ``Authorization`` value (the first counts); on Personalizer's routes,
    without one, its ``Ocp-Apim-Subscription-Key`` as a bearer token (the same check)."""
    authorization = next((v for k, v in headers if k == b"authorization"), None)
    key = next((v for k, v in headers if k == b"ocp-apim-subscription-key"), None)
    if authorization is None and key is not None and template.startswith(PERSONALIZER):
        return b"Bearer " + key
    return authorization

