"""The HTTP face of one :class:`engine.Engine` (FastAPI).

Every endpoint but ``/healthz`` needs a bearer token with the endpoint's scope
(:mod:`engine.serve.tokens`), checked once by :class:`engine.serve.front.Front`. Every error,
routing and parsing ones included, has the body ``{"error": {"field": ..., "reason": ...}}``;
nothing is stored unless the whole request is valid. One lock serializes the engine's calls
(it is not thread-safe).
"""

from __future__ import annotations

import json
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from engine.errors import LoopwiseError, UnknownDecisionError, ValidationError
from engine.serve import console, console_api, personalizer_routes, privacy
from engine.serve.front import PUBLIC, Front, RouteTable, error_response
from engine.serve.limits import BodyLimit
from engine.serve.metrics import Metrics
from engine.serve.schemas import (
    ErrorResponse,
    EventsRequest,
    EventsResponse,
    HealthResponse,
    RankRequest,
    RankResponse,
    RewardRequest,
    RewardResponse,
    http_field,
)
from engine.serve.tokens import Tokens

ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 413, 422)}
ERRORS_404 = {**ERRORS, 404: {"model": ErrorResponse}}
API_DOCS = ("off", "token")


def scoped(scope: str) -> dict:
    """``openapi_extra`` of a route needing ``scope`` (read by :class:`RouteTable`)."""
    return {"x-scope": scope, "security": [] if scope == PUBLIC else [{"bearer": []}]}


def create_app(engine, token: str | Tokens, *, max_body_bytes: int = 1 << 20,
               max_candidates: int = 200, max_headers: int = 100, api_docs: str = "token",
               access_log: str = "all", personalizer: dict | None = None,
               results_dir: str | None = None) -> FastAPI:
    """The FastAPI app over ``engine``; ``token`` is a static all-scopes token or a
    :class:`Tokens`. ``api_docs``: ``"token"`` serves ``/openapi.json`` to tokens with the
    ``read`` scope, ``"off"`` serves no spec; there are never HTML docs pages (they load
    scripts from a CDN). Closing the app (lifespan shutdown) closes the engine: learners
    flushed, snapshots written, the data directory released. ``personalizer``: settings
    of the Personalizer routes (:mod:`engine.serve.personalizer_routes`)."""
    tokens = token if isinstance(token, Tokens) else Tokens(token)
    if api_docs not in API_DOCS:
        raise ValueError(f"api_docs: one of {API_DOCS} (got {api_docs!r})")
    lock = threading.Lock()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        with lock:
            engine.close()

    app = FastAPI(title="Loopwise decision service", version="1", lifespan=lifespan,
                  description="Rank candidates for a user, report rewards, send behaviour "
                              "events. Each operation's x-scope names the token scope it needs.",
                  openapi_url="/openapi.json" if api_docs == "token" else None,
                  docs_url=None, redoc_url=None)
    _error_handlers(app)
    _routes(app, engine, lock, metrics, max_candidates, access_log)
    personalizer_routes.register(app, engine, lock, personalizer, scoped, ERRORS)
    # the console (/ui) and its JSON; offline reports from the data dir and results_dir
    console_api.mount(app, engine, lock, [str(engine.data_dir), *filter(None, [results_dir])])
    sessions = console.mount(app, tokens)
    _secure_spec(app)
    routes = RouteTable(app.routes, extra={"/openapi.json": "read"})
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(Front, tokens=tokens, routes=routes, metrics=metrics,
                       max_headers=max_headers, access_log=access_log, sessions=sessions)
    return app


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException):  # routing and parsing errors
        if exc.status_code == 404:
            return error_response(404, "path", "no such endpoint")
        if exc.status_code == 405:
            return error_response(405, "method",
                                  f"not allowed here; allowed: {exc.headers['Allow']}", exc.headers)
        return error_response(exc.status_code, "request", str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        err = exc.errors()[0]
        if err.get("type") == "json_invalid":
            return error_response(400, "body", "is not valid JSON")
        return error_response(422, pydantic_field(err.get("loc", ())), err.get("msg", "invalid"))

    @app.exception_handler(LoopwiseError)
    async def _engine(_: Request, exc: LoopwiseError):
        if isinstance(exc, ValidationError):
            return error_response(422, exc.field, str(exc).split(": ", 1)[-1])
        if isinstance(exc, UnknownDecisionError):
            return error_response(404, "eventId", str(exc).split(": ", 1)[-1])
        return error_response(409, "engine", str(exc))


def pydantic_field(loc) -> str:
    """pydantic's location of an error as a field path: ``actions[1].features[1]``."""
    out = ""
    for part in loc:
        if part != "body":
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _routes(app: FastAPI, engine, lock, metrics: Metrics, max_candidates: int,
            access_log: str):
    @app.get("/healthz", tags=["ops"], response_model=HealthResponse, openapi_extra=scoped(PUBLIC),
             responses={503: {"model": HealthResponse}})
    async def healthz():
        with lock:
            health = engine.health()
        return JSONResponse(health, status_code=503 if health["status"] == "failing" else 200)

    @app.get("/metrics", tags=["ops"], responses=ERRORS, response_class=Response,
             openapi_extra=scoped("read"))
    async def metrics_endpoint() -> Response:
        with lock:
            text = metrics.render(engine)
        return Response(text, media_type="text/plain; version=0.0.4")

    @app.post("/v1/rank", response_model=RankResponse, responses=ERRORS,
              openapi_extra=scoped("rank"))
    async def rank(req: RankRequest) -> JSONResponse:
        if len(req.actions) > max_candidates:
            raise ValidationError("actions", f"must hold at most {max_candidates} candidates",
                                  len(req.actions))
        excluded = set(req.excludedActions or ())
        kept = [i for i, a in enumerate(req.actions) if a.id not in excluded]
        if not kept:
            raise ValidationError("excludedActions", "excludes every action; nothing is left")
        context = dict(req.context or {})
        for obj in req.contextFeatures or []:
            context.update(obj)
        candidates = [{"id": a.id, "features": a.features, "topics": a.topics or (),
                       "tags": a.tags or ()} for a in (req.actions[i] for i in kept)]
        try:
            with lock:
                d = engine.rank(req.user_id, candidates, context or None,
                                slate_size=req.slateSize, decision_id=req.eventId)
        except ValidationError as exc:  # named in the request's own terms
            raise ValidationError(http_field(exc.field, kept, req.context or {}), exc.reason,
                                  exc.value) from None
        metrics.decisions.labels(d.variant).inc()
        probs = dict(zip(d.candidate_ids, d.probabilities, strict=True))
        slots = d.slot_propensities  # each slot's: the propensity it was filled with
        return JSONResponse({  # a Response: FastAPI does not re-validate it
            "ranking": [{"id": i, "probability": slots[j] if j < len(slots) else probs[i]}
                        for j, i in enumerate(d.ranking)],
            "eventId": d.decision_id, "rewardActionId": d.chosen, "variant": d.variant,
            "policyVersion": d.policy_version})

    @app.post("/v1/events/{event_id}/reward", response_model=RewardResponse,
              responses=ERRORS_404, openapi_extra=scoped("rank"))
    async def reward(event_id: str, req: RewardRequest) -> JSONResponse:
        try:
            with lock:
                r = engine.reward(event_id, req.value, slot=req.slot)
        except ValidationError as exc:
            raise ValidationError(http_field(exc.field, [], {}), exc.reason, exc.value) from None
        metrics.rewards.labels(r.status).inc()
        return JSONResponse({"eventId": r.decision_id, "status": r.status, "learned": r.learned})

    @app.post("/v1/events", response_model=EventsResponse, responses=ERRORS,
              openapi_extra=scoped("rank"))
    async def events(req: EventsRequest) -> EventsResponse:
        with lock:
            r = engine.ingest(req.events)
        metrics.events.labels("accepted").inc(r.accepted)
        metrics.events.labels("duplicate").inc(r.duplicates)
        return EventsResponse(accepted=r.accepted, duplicates=r.duplicates)

    _profile_routes(app, engine, lock, access_log)
    privacy.add_routes(app, engine, lock, scoped("read"), {**ERRORS, 409: {"model": ErrorResponse}})


def _profile_routes(app: FastAPI, engine, lock, access_log: str) -> None:
    @app.get("/v1/profiles/{user_id}", responses=ERRORS_404, openapi_extra=scoped("read"))
    async def get_profile(user_id: str):
        with lock:
            p = engine.profile(user_id)
        if p is None:
            return error_response(404, "user_id", "no profile for this user")
        return JSONResponse(json.loads(json.dumps(p, default=float)))

    @app.delete("/v1/profiles/{user_id}", responses=ERRORS, openapi_extra=scoped("admin"))
    async def delete_profile(user_id: str) -> dict:
        with lock:
            erased = engine.forget(user_id)
        if access_log != "off":
            privacy.log_erasure(engine, user_id, erased)
        return {"user_id": user_id, "deleted": erased}

    @app.get("/v1/experiments/report", responses=ERRORS_404, openapi_extra=scoped("read"))
    async def report():
        if len(engine.learners) < 2:
            return error_response(404, "variants", "no A/B test is configured (one variant)")
        with lock:
            report = json.dumps(engine.ab_report(), default=lambda _: None)
        return JSONResponse(json.loads(report))

    @app.get("/v1/rollout", responses=ERRORS_404, openapi_extra=scoped("read"))
    async def rollout():
        """The challenger's rollout: state, share of users it serves, settings, off-policy
        estimate against the champion, online A/B comparison, every step with its reason."""
        with lock:
            report = engine.rollout_report()
        if report is None:
            return error_response(404, "rollout",
                                  "no rollout is configured (engine.rollout in serve.yaml)")
        return JSONResponse(report)


def _secure_spec(app: FastAPI) -> None:
    """Declare the bearer scheme that the routes' ``security`` entries name."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = build()
            spec.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}}
        return app.openapi_schema

    app.openapi = openapi

