"""The web console at ``/ui``: sign-in, and the pages people read (users, why-this-item,
live figures, experiments, offline reports).

Pages are one static HTML shell each; the browser draws them with ``static/console.js``
(charts as inline SVG) from the JSON API of :mod:`engine.serve.console_api`, with the
session cookie of :mod:`engine.serve.sessions`. Every script and style ships in
``engine/serve/static``; the Content-Security-Policy allows this origin only, so a page
never loads anything from elsewhere. Pages need the ``read`` scope; a page asked for without
a session is sent to sign-in by :class:`engine.serve.front.Front`.

Examples
--------
>>> shell("live").startswith("<!doctype html>")
True
>>> 'data-page="live"' in shell("live")
True
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)

from engine.serve.front import PUBLIC
from engine.serve.sessions import COOKIE, LIFETIME, Sessions, same_origin, session_id
from engine.serve.tokens import AuthError, Tokens

STATIC = Path(__file__).parent / "static"
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
           "referrer-policy": "same-origin", "cache-control": "no-store"}
PAGES = {"users": "Users", "live": "Live", "experiments": "Experiments", "reports": "Offline"}
MAX_FORM = 4096  # bytes of a sign-in form


def shell(page: str, title: str = "Loopwise") -> str:
    """The HTML of a console page: navigation, an empty ``main`` the script fills."""
    nav = "".join(f'<a href="/ui/{p}" data-nav="{p}">{name}</a>' for p, name in PAGES.items())
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title>"
            "<link rel=stylesheet href=/ui/static/console.css><link rel=icon href='data:,'>"
            "<script src=/ui/static/console.js defer></script></head>"
            f'<body data-page="{page}"><header><b class=brand>Loopwise</b><nav>{nav}</nav>'
            "<span id=who></span><button id=signout type=button>Sign out</button></header>"
            "<main id=main><p class=muted>Loading…</p></main></body></html>")


def login_page(error: str = "", next_path: str = "/ui/users") -> str:
    """The sign-in form (plain HTML: it works before any script runs)."""
    message = f"<p class=error role=alert>{html.escape(error)}</p>" if error else ""
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Sign in · Loopwise"
            "</title><link rel=stylesheet href=/ui/static/console.css><link rel=icon href='data:,'>"
            "</head><body class=login>"
            "<form method=post action=/ui/login><h1>Loopwise console</h1>"
            "<label>Service token <input type=password name=token id=token autocomplete=off "
            "required autofocus></label>"
            f"<input type=hidden name=next value='{html.escape(next_path, quote=True)}'>"
            f"{message}<button type=submit>Sign in</button>"
            "<p class=muted>A token with the read scope; admin adds erasure.</p></form>"
            "</body></html>")


def _safe_next(path: str) -> str:
    """Where to go after sign-in: a console path on this site only (no open redirect)."""
    return path if path.startswith("/ui/") and not path.startswith("//") else "/ui/users"


def mount(app: FastAPI, tokens: Tokens) -> Sessions:
    """Add the console's page, sign-in and asset routes to ``app``; return its sessions
    (give them to :class:`~engine.serve.front.Front`)."""
    sessions = Sessions()
    page = {"include_in_schema": False, "openapi_extra": {"x-scope": "read"}}
    public = {"include_in_schema": False, "openapi_extra": {"x-scope": PUBLIC}}

    @app.get("/ui/login", **public)
    async def login_form(next: str = "/ui/users"):  # noqa: A002 - the query's name
        return HTMLResponse(login_page(next_path=_safe_next(next)), headers=HEADERS)

    @app.post("/ui/login", **public)
    async def login(request: Request):
        body = await request.body()
        form = parse_qs(body[:MAX_FORM].decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0]
        target = _safe_next((form.get("next") or [""])[0])
        def refuse(status: int, why: str) -> HTMLResponse:
            return HTMLResponse(login_page(why, target), status_code=status, headers=HEADERS)

        if request.headers.get("origin") and not same_origin(request.scope["headers"]):
            return refuse(403, "Sign in from this site's own page.")
        try:
            identity = tokens.authenticate(b"Bearer " + token.encode("utf-8"))
        except AuthError:
            return refuse(401, "Unknown token.")
        if "read" not in identity.scopes:
            return refuse(403, f"Token {identity.name!r} lacks the read scope.")
        sid, _ = sessions.open(token)
        response = RedirectResponse(target, status_code=303, headers=HEADERS)
        response.set_cookie(COOKIE, sid, max_age=int(LIFETIME), path="/", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.post("/ui/logout", **page)
    async def logout(request: Request):
        sessions.close(session_id(request.scope["headers"]))
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/ui/session", **page)
    async def whoami(request: Request):
        """Who is signed in, their scopes and the CSRF token their script sends back."""
        identity = request.scope["state"]["identity"]
        return JSONResponse({"name": identity.name, "scopes": sorted(identity.scopes),
                             "csrf": sessions.csrf(session_id(request.scope["headers"]))},
                            headers={"cache-control": "no-store"})

    @app.get("/ui/static/{name}", **public)
    async def asset(name: str):
        if name not in ASSETS:
            return Response(status_code=404)
        return FileResponse(STATIC / name, media_type=ASSETS[name],
                            headers={"x-content-type-options": "nosniff"})

    @app.get("/ui", **page)
    async def home():
        return RedirectResponse("/ui/users", status_code=303)

    def add_page(path: str, name: str, title: str) -> None:
        async def show():
            return HTMLResponse(shell(name, f"{title} · Loopwise"), headers=HEADERS)
        app.get(path, **page, name=f"ui_{name}")(show)

    for path, name, title in [
            ("/ui/users", "users", "Users"), ("/ui/users/{user_id}", "user", "User"),
            ("/ui/decisions/{event_id}", "decision", "Why this item"),
            ("/ui/live", "live", "Live"), ("/ui/experiments", "experiments", "Experiments"),
            ("/ui/reports", "reports", "Offline results"),
            ("/ui/reports/{report:path}", "report", "Report")]:
        add_page(path, name, title)
    return sessions
