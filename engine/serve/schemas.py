"""Request and response bodies of the HTTP API (pydantic); the OpenAPI spec comes from these."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    """A request body: unknown keys are refused (422 naming the key)."""

    model_config = ConfigDict(extra="forbid")


class Action(Body):
    id: str = Field(min_length=1, max_length=256, description="item id")
    features: list[float] | None = Field(None, description="numeric item features")
    topics: list[str] | None = Field(None, max_length=256)
    tags: list[str] | None = Field(None, max_length=256)


class RankRequest(Body):
    """A rank request in the shape of rank/reward services (Personalizer), plus the user."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    user_id: str = Field(min_length=1, max_length=256, description="whose profile drives it")
    contextFeatures: list[dict[str, float]] | None = Field(
        None, description="context feature objects, merged into one mapping")
    context: dict[str, float] | None = Field(None, description="context as one mapping")
    actions: list[Action] = Field(min_length=1, description="candidates, with ids and features")
    excludedActions: list[str] | None = Field(None, description="ids removed before ranking")
    eventId: str | None = Field(None, min_length=1, max_length=256,
                                description="id to report the reward under (default: new)")
    slateSize: int = Field(1, ge=1, le=100, description="slots filled by the policy")


class RankedAction(BaseModel):
    id: str
    probability: float = Field(description="a slot's: the propensity the slot was filled with "
                               "(given the earlier slots); below the slate: the policy's "
                               "probability of the item")


class RankResponse(BaseModel):
    ranking: list[RankedAction]
    eventId: str
    rewardActionId: str
    variant: str
    policyVersion: int


class RewardRequest(Body):
    value: float = Field(description="the reward of the decision (of its slot with slot)")
    slot: int | None = Field(None, ge=0, le=99, description="a slate's slot (0-based) this "
                             "reward is for; each slot is learned with its own propensity")


class RewardResponse(BaseModel):
    eventId: str
    status: str = Field(description="joined | duplicate | late")
    learned: bool


class EventsRequest(Body):
    events: list[dict[str, Any]] = Field(description="behaviour events (see the README)")


class EventsResponse(BaseModel):
    accepted: int
    duplicates: int


class ErrorBody(BaseModel):
    field: str
    reason: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class HealthResponse(BaseModel):
    status: str = Field(description="ok | degraded | failing (503)")
    quarantined: int | None = Field(description="records set aside as unwritable")
    reason: str | None = Field(description="why the store is not ok")


_ENGINE_FIELD = re.compile(r"^(?:requests\[\d+\]\.)?(candidates|user_id|decision_id|context|"
                           r"slate_size|value)(?:\[(\d+)\])?(.*)$")
_HTTP_NAMES = {"candidates": "actions", "decision_id": "eventId", "slate_size": "slateSize"}


def http_field(field: str, kept: list[int], context: dict) -> str:
    """An engine field path in the HTTP body's terms: candidate ``k`` is the ``kept[k]``-th
    action (excluded actions are not sent to the engine), a context key sent in
    ``contextFeatures`` is named there.

    Examples
    --------
    >>> http_field("requests[0].candidates[1].features", [0, 2], {})
    'actions[2].features'
    >>> http_field("requests[0].context.age", [0], {}), http_field("decision_id", [], {})
    ('contextFeatures.age', 'eventId')
    """
    m = _ENGINE_FIELD.match(field)
    if m is None:
        return field
    name, index, rest = m.groups()
    if name == "context":
        key = rest.removeprefix(".")
        return ("context." if key in context else "contextFeatures.") + key
    if index is not None and name == "candidates":
        k = int(index)
        return f"actions[{kept[k] if k < len(kept) else k}]{rest}"
    return _HTTP_NAMES.get(name, name) + (f"[{index}]" if index is not None else "") + rest
