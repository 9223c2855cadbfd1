"""Personalizer's REST routes (``/personalizer/v1.0/...``) on the Loopwise app.

Bodies are Personalizer's (its public REST reference and the official Python client
``azure-cognitiveservices-personalizer``): rank answers 201, reward and activate 204,
errors keep Loopwise's shape ``{"error": {"field", "reason"}}`` with fields named as in the
body. The credential may come as ``Ocp-Apim-Subscription-Key`` (checked by the one access
check, :class:`engine.serve.front.Front`, as a bearer token). The work is
:class:`engine.personalizer.Personalizer`'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from engine.errors import ValidationError
from engine.personalizer import Personalizer
from engine.personalizer_settings import ServiceSettings
from engine.serve.schemas import Body

PREFIX = "/personalizer/v1.0"
#: keys of ``serve.yaml``'s ``personalizer:`` mapping besides :class:`ServiceSettings`'s
OPTIONS = ("user_path", "apprentice_window")

Features = list[dict[str, Any]]


class PAction(Body):
    id: str = Field(min_length=1, max_length=256)
    features: Features | None = Field(None, description="feature objects (any JSON values)")


class PRankRequest(Body):
    """Personalizer's ``RankRequest``."""

    contextFeatures: Features | None = None
    actions: list[PAction] = Field(min_length=1)
    excludedActions: list[str] | None = None
    eventId: str | None = Field(None, min_length=1, max_length=256)
    deferActivation: bool | None = False


class PSlot(Body):
    id: str = Field(min_length=1, max_length=100)
    features: Features | None = None
    excludedActions: list[str] | None = None
    baselineAction: str = Field(min_length=1, max_length=256)


class PMultiSlotRankRequest(Body):
    """Personalizer's ``MultiSlotRankRequest``."""

    contextFeatures: Features | None = None
    actions: list[PAction] = Field(min_length=1)
    slots: list[PSlot] = Field(min_length=1, max_length=50)
    eventId: str | None = Field(None, min_length=1, max_length=150)
    deferActivation: bool | None = False


class PRewardRequest(Body):
    value: float


class PSlotReward(Body):
    slotId: str = Field(min_length=1, max_length=100)
    value: float


class PMultiSlotRewardRequest(Body):
    reward: list[PSlotReward] = Field(min_length=1, max_length=50)


class PServiceConfiguration(Body):
    """Personalizer's ``ServiceConfiguration`` (the settings Loopwise acts on)."""

    rewardWaitTime: str | None = Field(None, description="ISO 8601 duration, e.g. PT10M")
    defaultReward: float | None = None
    explorationPercentage: float | None = None
    learningMode: str | None = Field(None, description="Online | Apprentice | Inference")
    logRetentionDays: int | None = None
    rewardAggregation: str | None = None
    lastConfigurationEditDate: str | None = Field(None, description="read-only; ignored")
    logRetentionEnforced: bool | None = Field(
        None, description="read-only; ignored. false: logRetentionDays is recorded but no log "
        "is deleted by age yet")


def register(app: FastAPI, engine, lock, options: Mapping | None, scoped, errors: dict) -> None:
    """Add the Personalizer routes; ``options``: ``serve.yaml``'s ``personalizer:`` mapping
    (settings in snake_case, plus :data:`OPTIONS`); ``scoped(scope)``: a route's
    ``openapi_extra``."""
    options = dict(options or {})
    p = Personalizer(engine, **{k: options.pop(k) for k in OPTIONS if k in options})
    p.configure(ServiceSettings.from_mapping(options, p.settings, also=OPTIONS))
    not_found = {**errors, 404: {"model": errors[422]["model"]}}

    def route(method: str, path: str, scope: str, status: int = 200, responses=errors):
        return getattr(app, method)(path, status_code=status, responses=responses,
                                    tags=["personalizer"], openapi_extra=scoped(scope))

    def done(fn, *args) -> Response:
        """``fn(*args)`` under the engine's lock, answered 204 (no content)."""
        with lock:
            fn(*args)
        return Response(status_code=204)

    @route("post", f"{PREFIX}/rank", "rank", 201)
    async def rank(req: PRankRequest) -> JSONResponse:
        with lock:
            return JSONResponse(p.rank(req.model_dump()), status_code=201)

    @route("post", f"{PREFIX}/events/{{eventId}}/reward", "rank", 204, not_found)
    async def reward(eventId: str, req: PRewardRequest) -> Response:  # noqa: N803
        return done(p.reward, eventId, req.value)

    @route("post", f"{PREFIX}/events/{{eventId}}/activate", "rank", 204, not_found)
    async def activate(eventId: str) -> Response:  # noqa: N803
        return done(p.activate, eventId)

    @route("post", f"{PREFIX}/multislot/rank", "rank", 201)
    async def multislot_rank(req: PMultiSlotRankRequest) -> JSONResponse:
        with lock:
            return JSONResponse(p.multislot_rank(req.model_dump()), status_code=201)

    @route("post", f"{PREFIX}/multislot/events/{{eventId}}/reward", "rank", 204, not_found)
    async def multislot_reward(eventId: str, req: PMultiSlotRewardRequest) -> Response:  # noqa: N803
        return done(p.multislot_reward, eventId, [r.model_dump() for r in req.reward])

    @route("post", f"{PREFIX}/multislot/events/{{eventId}}/activate", "rank", 204, not_found)
    async def multislot_activate(eventId: str) -> Response:  # noqa: N803
        return done(p.multislot_activate, eventId)

    @route("get", f"{PREFIX}/configurations/service", "read")
    async def get_settings() -> JSONResponse:
        return JSONResponse(p.settings.to_wire())

    @route("put", f"{PREFIX}/configurations/service", "admin")
    async def put_settings(req: PServiceConfiguration) -> JSONResponse:
        body = req.model_dump(exclude_unset=True)
        nulls = [k for k, v in body.items() if v is None and k not in _NULLABLE]
        if nulls:
            raise ValidationError(nulls[0], "must not be null")
        with lock:
            settings = p.configure(ServiceSettings.from_wire(body, p.settings))
        return JSONResponse(settings.to_wire())

    @route("get", f"{PREFIX}/configurations/policy", "read")
    async def get_policy() -> JSONResponse:
        """Personalizer's ``PolicyContract``: the policy each variant runs and its
        parameters (read only: a policy is set in ``serve.yaml``'s ``engine:``)."""
        specs = engine.config.variant_specs()
        name, spec = next(iter(specs.items()))
        return JSONResponse({"name": str(spec["policy"]),
                             "arguments": json.dumps(spec["params"], sort_keys=True,
                                                     default=str),
                             "variants": {k: {"policy": str(v["policy"]),
                                              "weight": v["weight"]} for k, v in specs.items()},
                             "variant": name})

    @route("get", "/v1/apprentice", "read")
    async def apprentice() -> JSONResponse:
        with lock:
            return JSONResponse({"learningMode": p.settings.learning_mode,
                                 **p.apprentice.report()})


_NULLABLE = ("explorationPercentage", "logRetentionDays", "lastConfigurationEditDate",
             "logRetentionEnforced")
