"""The hot endpoints' happy path, served below FastAPI's routing and dependency machinery.

``POST /v1/rank`` and ``POST /v1/events/{event_id}/reward`` are most of a decision
service's traffic. :class:`FastLane` answers a well-formed request of either kind itself: it
parses the body with pydantic's JSON parser into the same request models and calls the same
handler functions as the FastAPI routes, so answers are identical. It sits inside
:class:`engine.serve.front.Front`, so the access check, metrics and access log are the same
one for both. Anything else — a body that does not parse or validate, a request the engine
refuses as invalid or unknown — is handed to the FastAPI app unchanged, which produces the
documented error. Those refusals happen before the engine changes anything, so handing over
never does work twice; any other engine error is answered here with the app's own response
for it. The OpenAPI spec stays the FastAPI routes' spec.
"""

from __future__ import annotations

import json

import pydantic

from engine.errors import LoopwiseError, UnknownDecisionError, ValidationError
from engine.serve.schemas import RankRequest, RewardRequest


class FastLane:
    """ASGI middleware: serve valid rank and reward requests directly (already authorized
    by :class:`~engine.serve.front.Front`)."""

    def __init__(self, app, rank, reward, engine_error):
        self.app = app
        self._rank, self._reward = rank, reward
        self._engine_error = engine_error  # LoopwiseError -> the app's error response

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == "/v1/rank":
            event_id = None
        elif (path.startswith("/v1/events/") and path.endswith("/reward")
              and path.count("/") == 4 and len(path) > len("/v1/events//reward")):
            event_id = path[len("/v1/events/"):-len("/reward")]
        else:
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-type" and not value.startswith(b"application/json"):
                return await self.app(scope, receive, send)
        body = await read_body(receive)
        if body is None:
            return  # the client went away
        try:
            if event_id is None:
                answer = self._rank(RankRequest.model_validate_json(body))
            else:
                answer = self._reward(event_id, RewardRequest.model_validate_json(body))
        except (pydantic.ValidationError, ValidationError, UnknownDecisionError):
            # FastAPI words the error
            return await self.app(scope, replay(body, receive), send)
        except LoopwiseError as exc:  # refused mid-way: answered here, not done again
            return await self._engine_error(exc)(scope, receive, send)
        payload = json.dumps(answer, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


class BodyTooLarge(Exception):
    """A request body longer than the limit given to :func:`read_body`."""


async def read_body(receive, max_bytes: int | None = None) -> bytes | None:
    """The whole request body (``None`` if the client went away first); raises
    :class:`BodyTooLarge` as soon as more than ``max_bytes`` arrived."""
    chunks, seen = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        seen += len(chunk)
        if max_bytes is not None and seen > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive):
    """A ``receive`` that yields ``body`` (already read) once, then defers to ``receive``."""
    sent = False

    async def again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
