"""The HTTP face of one :class:`engine.Engine` (FastAPI).

Every endpoint but ``/healthz`` needs ``Authorization: Bearer <token>`` (compared in
constant time; 401 without a token, 403 with a wrong one). Bad requests get a 4xx whose body
is ``{"error": {"field": ..., "reason": ...}}``; nothing is stored unless the whole request
is valid. The engine is not thread-safe: one lock serializes its calls.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.errors import LoopwiseError, UnknownDecisionError, ValidationError
from engine.serve.fastlane import BodyTooLarge, FastLane, read_body, replay
from engine.serve.metrics import Metrics
from engine.serve.schemas import (
    ErrorResponse,
    EventsRequest,
    EventsResponse,
    RankRequest,
    RankResponse,
    RewardRequest,
    RewardResponse,
)

ERRORS = {401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
          413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}}


def _error(status: int, field: str, reason: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"field": field, "reason": reason}}, status_code=status,
                        headers=headers)


def engine_error(exc: LoopwiseError) -> JSONResponse:
    """The answer to an engine error other than bad input or an unknown decision."""
    return _error(409, "engine", str(exc))


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` (413), with or without a
    Content-Length header (chunked bodies are counted as they stream in)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    return await self._refuse(scope, receive, send)
        # read the whole body first (at most max_bytes of it), then replay it to the app
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyTooLarge:
            return await self._refuse(scope, receive, send)
        if body is not None:
            await self.app(scope, replay(body, receive), send)

    async def _refuse(self, scope, receive, send):
        response = _error(413, "body", f"must be at most {self.max_bytes} bytes")
        await response(scope, receive, send)


def create_app(engine, token: str, *, max_body_bytes: int = 1 << 20,
               max_candidates: int = 200) -> FastAPI:
    """The FastAPI app over ``engine``. Closing the app (lifespan shutdown) closes the
    engine: learners flushed, snapshots written, the data directory released."""
    if not token:
        raise ValueError("token: a bearer token is required (LOOPWISE_TOKEN, --token or config)")
    lock = threading.Lock()
    metrics = Metrics()
    bearer = HTTPBearer(auto_error=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        with lock:
            engine.close()

    app = FastAPI(title="Loopwise decision service", version="1", lifespan=lifespan,
                  description="Rank candidates for a user, report rewards, send behaviour events.")
    app.state.engine = engine
    app.state.metrics = metrics

    async def authorize(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        # async: a plain def would hop to the thread pool on every request
        if creds is None or not creds.credentials:
            raise _AuthError(401, "missing bearer token")
        if not hmac.compare_digest(creds.credentials.encode(), token.encode()):
            raise _AuthError(403, "wrong bearer token")

    @app.exception_handler(_AuthError)
    async def _auth(_: Request, exc: _AuthError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, "authorization", exc.reason, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        err = exc.errors()[0]
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        if err.get("type") == "json_invalid":
            return _error(400, "body", "is not valid JSON")
        return _error(422, ".".join(loc) or "body", err.get("msg", "invalid"))

    @app.exception_handler(ValidationError)
    async def _engine_invalid(_: Request, exc: ValidationError):
        return _error(422, exc.field, str(exc).split(": ", 1)[-1])

    @app.exception_handler(UnknownDecisionError)
    async def _unknown(_: Request, exc: UnknownDecisionError):
        return _error(404, "eventId", str(exc).split(": ", 1)[-1])

    @app.exception_handler(LoopwiseError)
    async def _other(_: Request, exc: LoopwiseError):
        return engine_error(exc)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], dependencies=[Depends(authorize)], responses=ERRORS,
             response_class=Response)
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    def do_rank(req: RankRequest) -> dict:
        """The rank endpoint's work (shared with the fast lane); returns the response body."""
        if len(req.actions) > max_candidates:
            raise ValidationError("actions", f"must hold at most {max_candidates} candidates",
                                  len(req.actions))
        excluded = set(req.excludedActions or ())
        actions = [a for a in req.actions if a.id not in excluded]
        if not actions:
            raise ValidationError("excludedActions", "excludes every action; nothing is left")
        context = dict(req.context or {})
        for obj in req.contextFeatures or []:
            context.update(obj)
        candidates = [{"id": a.id, "features": a.features, "topics": a.topics or (),
                       "tags": a.tags or ()} for a in actions]
        with lock:
            d = engine.rank(req.user_id, candidates, context or None,
                            slate_size=req.slateSize, decision_id=req.eventId)
        metrics.decisions.labels(d.variant).inc()
        probs = dict(zip(d.candidate_ids, d.probabilities, strict=True))
        return {"ranking": [{"id": i, "probability": probs[i]} for i in d.ranking],
                "eventId": d.decision_id, "rewardActionId": d.chosen, "variant": d.variant,
                "policyVersion": d.policy_version}

    def do_reward(event_id: str, req: RewardRequest) -> dict:
        with lock:
            r = engine.reward(event_id, req.value)
        metrics.rewards.labels(r.status).inc()
        return {"eventId": r.decision_id, "status": r.status, "learned": r.learned}

    @app.post("/v1/rank", response_model=RankResponse, dependencies=[Depends(authorize)],
              responses=ERRORS)
    async def rank(req: RankRequest) -> RankResponse:
        return RankResponse(**do_rank(req))

    @app.post("/v1/events/{event_id}/reward", response_model=RewardResponse,
              dependencies=[Depends(authorize)], responses={**ERRORS, 404: {"model": ErrorResponse}})
    async def reward(event_id: str, req: RewardRequest) -> RewardResponse:
        return RewardResponse(**do_reward(event_id, req))

    @app.post("/v1/events", response_model=EventsResponse, dependencies=[Depends(authorize)],
              responses=ERRORS)
    async def events(req: EventsRequest) -> EventsResponse:
        with lock:
            r = engine.ingest(req.events)
        metrics.events.labels("accepted").inc(r.accepted)
        metrics.events.labels("duplicate").inc(r.duplicates)
        return EventsResponse(accepted=r.accepted, duplicates=r.duplicates)

    @app.get("/v1/profiles/{user_id}", dependencies=[Depends(authorize)],
             responses={**ERRORS, 404: {"model": ErrorResponse}})
    async def get_profile(user_id: str):
        with lock:
            p = engine.profile(user_id)
        if p is None:
            return _error(404, "user_id", "no profile for this user")
        return JSONResponse(json.loads(json.dumps(p, default=float)))

    @app.delete("/v1/profiles/{user_id}", dependencies=[Depends(authorize)], responses=ERRORS)
    async def delete_profile(user_id: str) -> dict:
        with lock:
            return {"user_id": user_id, "deleted": engine.forget(user_id)}

    @app.get("/v1/experiments/report", dependencies=[Depends(authorize)],
             responses={**ERRORS, 404: {"model": ErrorResponse}})
    async def report():
        if len(engine.learners) < 2:
            return _error(404, "variants", "no A/B test is configured (one variant)")
        with lock:
            return JSONResponse(json.loads(json.dumps(engine.ab_report(), default=_nan)))

    app.add_middleware(FastLane, token=token, rank=do_rank, reward=do_reward,
                       engine_error=engine_error)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(Observe, metrics=metrics)
    return app


class Observe:
    """ASGI middleware: request counts and latency histograms per route template."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


def _nan(x):
    return None


class _AuthError(Exception):
    def __init__(self, status: int, reason: str):
        self.status = status
        self.reason = reason
