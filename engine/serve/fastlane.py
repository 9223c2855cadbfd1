"""The hot endpoints' happy path, served below FastAPI's routing and dependency machinery.

``POST /v1/rank`` and ``POST /v1/events/{event_id}/reward`` are most of a decision
service's traffic. :class:`FastLane` answers a well-formed, authorized request of either kind
itself: it checks the bearer token in constant time, parses the body with pydantic's JSON
parser into the same request models and calls the same handler functions as the FastAPI
routes, so answers are identical. Anything else — a missing or wrong token, a body that does
not parse or validate, a request the engine refuses — is handed to the FastAPI app
unchanged, which produces the documented error. Those refusals happen before the engine
changes anything, so handing over never does work twice. The OpenAPI spec stays the FastAPI
routes' spec.
"""

from __future__ import annotations

import hmac
import json

import pydantic

from engine.errors import UnknownDecisionError, ValidationError
from engine.serve.schemas import RankRequest, RewardRequest


class _Route:
    """What :class:`~engine.serve.app.Observe` reads from ``scope["route"]``."""

    def __init__(self, path: str):
        self.path = path


_RANK = _Route("/v1/rank")
_REWARD = _Route("/v1/events/{event_id}/reward")


class FastLane:
    """ASGI middleware: serve valid, authorized rank and reward requests directly."""

    def __init__(self, app, token: str, rank, reward):
        self.app = app
        self._expected = f"Bearer {token}".encode()
        self._rank, self._reward = rank, reward

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == "/v1/rank":
            route, event_id = _RANK, None
        elif (path.startswith("/v1/events/") and path.endswith("/reward")
              and path.count("/") == 4 and len(path) > len("/v1/events//reward")):
            route, event_id = _REWARD, path[len("/v1/events/"):-len("/reward")]
        else:
            return await self.app(scope, receive, send)
        auth = ctype = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"content-type":
                ctype = value
        if auth is None or not hmac.compare_digest(auth, self._expected) or (
                ctype is not None and not ctype.startswith(b"application/json")):
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            if event_id is None:
                answer = self._rank(RankRequest.model_validate_json(body))
            else:
                answer = self._reward(event_id, RewardRequest.model_validate_json(body))
        except (pydantic.ValidationError, ValidationError, UnknownDecisionError):
            return await self.app(scope, _replay(body, receive), send)  # FastAPI words the error
        scope["route"] = route
        payload = json.dumps(answer, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
