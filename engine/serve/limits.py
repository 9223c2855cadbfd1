"""Size limits on what a client sends, enforced before anything is authenticated or parsed.

Request heads (request line and headers) are bounded in the HTTP protocol itself
(:func:`http_protocol`, 431), so an endless header costs a few kilobytes, not memory; header
lines are counted by :class:`engine.serve.front.Front` (431); bodies by :class:`BodyLimit`
(413), after the access check, so a stranger cannot make the server buffer a body at all.
"""

from __future__ import annotations

import json

from engine.serve.front import access_log, error_response


def http_protocol(max_header_bytes: int) -> type:
    """The uvicorn ``http`` setting that bounds request heads to ``max_header_bytes``: a
    subclass of uvicorn's httptools protocol (httptools ships with ``uvicorn[standard]``)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
            self._answer(400, "Bad Request", "request", "is not a valid HTTP/1.1 request")

        def _refuse(self) -> None:
            self._head_bytes = None
            if not self.transport.is_closing():
                access_log.info("token=- method=- route=- status=431 (request head over %d bytes)",
                                max_header_bytes)
                self._answer(431, "Request Header Fields Too Large", "headers",
                             f"request line and headers must be at most {max_header_bytes} bytes")

        def _answer(self, status: int, phrase: str, field: str, reason: str) -> None:
            """Write an error in the API's shape and close the connection."""
            body = json.dumps({"error": {"field": field, "reason": reason}}).encode()
            head = (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
            self.transport.write(head.encode() + body)
            self.transport.close()

    return BoundedHead


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` (413), with or without a
    Content-Length header (chunked bodies are counted as they stream in). The body is read
    whole (at most ``max_bytes`` of it) before the app sees it, then replayed to it."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = next((v for k, v in scope.get("headers", []) if k == b"content-length"), b"")
        if length.isdigit() and int(length) > self.max_bytes:  # else counted as it streams in
            return await self._refuse(scope, receive, send)
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_bytes:
                return await self._refuse(scope, receive, send)
            if not message.get("more_body", False):
                break
        whole = iter([{"type": "http.request", "body": b"".join(chunks), "more_body": False}])

        async def replay():  # the body once, then whatever the client sends (a disconnect)
            return next(whole, None) or await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        await error_response(413, "body", f"must be at most {self.max_bytes} bytes")(
            scope, receive, send)
