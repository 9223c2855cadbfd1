"""The HTTP face of privacy: ``GET /v1/aggregates`` (DP releases) and the erasure record.

``GET /v1/aggregates?epsilon=E&topics=a,b&alpha=0.05`` (``read`` scope) answers
:meth:`engine.Engine.dp_release`: each figure with its noise scale and interval, charged to
the data directory's budget; a release the budget cannot pay is refused with 409 naming
``epsilon``. An erasure (``DELETE /v1/profiles/{user_id}``) adds one line to the access log
with the user's pseudonym (never the id; without a key, no id at all) and what was erased.
"""

from __future__ import annotations

import json
import logging
import math

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from engine.errors import ValidationError
from engine.privacy.budget import BudgetExceeded
from engine.serve.front import error_response

access_log = logging.getLogger("loopwise.access")


def _number(name: str, raw: str | None, default: float | None = None) -> float:
    if raw is None:
        if default is None:
            raise ValidationError(name, "is required (a number > 0)")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError(name, "must be a number", raw) from None
    if not math.isfinite(value):
        raise ValidationError(name, "must be a finite number", raw)
    return value


def add_routes(app: FastAPI, engine, lock, extra: dict, responses: dict) -> None:
    """Add ``GET /v1/aggregates`` (``extra``: the route's scope, as app.scoped gives it)."""

    @app.get("/v1/aggregates", tags=["privacy"], responses=responses, openapi_extra=extra)
    async def aggregates(epsilon: str | None = None, topics: str = "",
                         alpha: str | None = None) -> JSONResponse:
        eps = _number("epsilon", epsilon)
        level = _number("alpha", alpha, 0.05)
        names = [t.strip() for t in topics.split(",") if t.strip()]
        try:
            with lock:
                report = engine.dp_release(eps, topics=names, alpha=level)
        except BudgetExceeded as exc:
            return error_response(409, "epsilon", str(exc))
        return JSONResponse(json.loads(json.dumps(report)))


def log_erasure(engine, user_id: str, erased: dict) -> None:
    """The access log's record of an erasure: the pseudonym (with a key) and the counts."""
    pseudo = engine.pseudonyms
    who = pseudo(user_id) if pseudo is not None else "(no pseudonym key: id not logged)"
    counts = " ".join(f"{k}={erased[k]}" for k in
                      ("profile", "events", "decisions", "rewards", "items", "wal") if k in erased)
    access_log.info("erasure user=%s %s", who, counts)
