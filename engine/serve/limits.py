"""Size limits on what a client sends, enforced before anything is authenticated or parsed.

* Header bytes: :func:`http_protocol` gives uvicorn an HTTP protocol that counts the bytes
  of each request's head (request line and headers) as they arrive and answers 431 once
  they pass ``max_header_bytes``, before the parser buffers them: a client sending an
  endless header costs a few kilobytes and one short answer, not memory and CPU.
* Header lines: counted by :class:`engine.serve.front.Front` (431).
* Body bytes: :class:`BodyLimit` (413), after the access check, so a stranger cannot make the
  server buffer a body at all.
"""

from __future__ import annotations

import json
import logging

from engine.serve.front import error_body

log = logging.getLogger("loopwise.access")


def refusal(status: int, phrase: str, field: str, reason: str) -> bytes:
    """A complete HTTP/1.1 error response (the API's error shape) that closes the
    connection."""
    body = json.dumps({"error": {"field": field, "reason": reason}}).encode()
    return (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def http_protocol(max_header_bytes: int):
    """The uvicorn ``http`` setting that bounds request heads to ``max_header_bytes``: a
    subclass of uvicorn's httptools protocol, or h11 with its own bound where httptools is
    not installed. Returns (http, extra uvicorn.Config keyword arguments)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools ships with uvicorn[standard]
        return "h11", {"h11_max_incomplete_event_size": max_header_bytes}

    class BoundedHead(HttpToolsProtocol):
        """uvicorn's httptools protocol, refusing request heads over the limit (431)."""

        def connection_made(self, transport) -> None:
            self._head_bytes = 0  # bytes of the current request's head; None in a body
            self._heads = 0  # request heads parsed on this connection
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            if self._head_bytes is None:
                return super().data_received(data)
            room = max_header_bytes - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                return super().data_received(data)
            heads = self._heads  # the head may end inside the room left, a body follow
            super().data_received(data[:room])
            if self._heads == heads:
                return self._refuse()
            if not self.transport.is_closing():
                self.data_received(data[room:])

        def on_headers_complete(self) -> None:
            self._head_bytes = None
            self._heads += 1
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._head_bytes = 0
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:  # a request that is not HTTP/1.1
            self.transport.write(refusal(400, "Bad Request", "request",
                                         "is not a valid HTTP/1.1 request"))
            self.transport.close()

        def _refuse(self) -> None:
            self._head_bytes = None
            if not self.transport.is_closing():
                log.info("token=- method=- route=- status=431 (request head over %d bytes)",
                         max_header_bytes)
                self.transport.write(refusal(
                    431, "Request Header Fields Too Large", "headers",
                    f"request line and headers must be at most {max_header_bytes} bytes"))
                self.transport.close()

    return BoundedHead, {}


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
                    return await self._refuse(send)
        # read the whole body first (at most max_bytes of it), then replay it to the app
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyTooLarge:
            return await self._refuse(send)
        if body is not None:
            await self.app(scope, replay(body, receive), send)

    async def _refuse(self, send):
        start, body = error_body(413, "body", f"must be at most {self.max_bytes} bytes")
        await send(start)
        await send({"type": "http.response.body", "body": body})


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
