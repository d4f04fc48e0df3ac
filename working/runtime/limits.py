"""What one client may make the server hold: the request head, open WebSockets, event size.

uvicorn 0.54's httptools protocol reads a request head whole, however large (a 64 MiB header is
accumulated and answered), and arms no timer until a first response has been sent, so a client
that trickles its headers holds its connection for ever. `BoundedHttpTools` answers 431 once the
head passes `max_request_head_bytes` and closes a connection whose head is not complete within
`request_head_timeout_s`; after the head, everything is uvicorn's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .contract import contract

log = logging.getLogger("working.limits")

_LIMITS = contract()["limits"]
MAX_HEAD_BYTES: int = _LIMITS["max_request_head_bytes"]
HEAD_TIMEOUT_S: float = _LIMITS["request_head_timeout_s"]
KEEP_ALIVE_TIMEOUT_S: int = _LIMITS["keep_alive_timeout_s"]
MAX_WEBSOCKET_MESSAGE_BYTES: int = _LIMITS["max_websocket_message_bytes"]
MAX_ROUTER_DATA_BYTES: int = _LIMITS["max_router_data_bytes"]
MAX_UPLOAD_BYTES: int = _LIMITS["max_upload_bytes"]
# Reflex's upload endpoint (reflex_base.constants.Endpoint.UPLOAD), at the root: one origin.
UPLOAD_PATH = "/_upload"

# After refusing a request, what the client still sends is read and dropped for this long (or
# this much), so that the client reads the answer before the close resets the connection.
_LINGER_S = 2.0
_LINGER_BYTES = 1 << 20


def _response(status: int, reason: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


_TOO_LARGE = _response(
    431, "Request Header Fields Too Large", f"request head over {MAX_HEAD_BYTES} bytes\n"
)
_TIMEOUT = _response(408, "Request Timeout", "request head not complete in time\n")


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit and a deadline on each request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a byte is held to the same deadline.
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._head_bytes += len(data)  # lingering: read and dropped
            if self._head_bytes > MAX_HEAD_BYTES + _LINGER_BYTES:
                self.transport.close()
            return
        counted = self._in_head
        if counted:
            self._head_bytes += len(data)
            self._arm_head_timer()
        super().data_received(data)
        if self._in_head and not counted:  # a new request began within this chunk
            self._head_bytes += len(data)
            self._arm_head_timer()
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse(_TOO_LARGE, f"431: request head over {MAX_HEAD_BYTES} bytes")

    def on_message_begin(self) -> None:
        # Between requests uvicorn's keep-alive timeout watches the idle connection; the next
        # request's first bytes begin its head and arm the deadline again (data_received).
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and self.transport is not None:
            self._head_timer = asyncio.get_running_loop().call_later(
                HEAD_TIMEOUT_S, self._head_timed_out
            )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self._head_bytes:
            self._refuse(_TIMEOUT, f"408: request head not complete in {HEAD_TIMEOUT_S:g}s")
        else:
            self.transport.close()

    def _refuse(self, response: bytes, why: str) -> None:
        self._refused = True
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        log.warning("refused a request from %s: %s", client, why)
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(_LINGER_S, self.transport.close)


class ConnectionLimit:
    """At most `per_client` WebSockets open at once from one client address (the proxy's
    forwarded address when the proxy is trusted); one more is refused before it is accepted."""

    def __init__(self, app: ASGIApp, per_client: int) -> None:
        self.app = app
        self.per_client = per_client
        self.open: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else "-"
        if self.open[address] >= self.per_client:
            log.warning(
                "refused a WebSocket from %s: %d already open (MAX_CONNECTIONS_PER_CLIENT)",
                address,
                self.per_client,
            )
            await send({"type": "websocket.close", "code": 1008})
            return
        self.open[address] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open[address] -= 1
            if not self.open[address]:
                del self.open[address]


class UploadLimit:
    """At most `max_upload_bytes` per request to Reflex's upload endpoint.

    Reflex reads an upload whole before its handler runs (reflex_components_core's _upload.py:
    `request.form()`, or its streaming parser for a background handler), and Starlette's parser
    bounds the number of files, not their size. A declared Content-Length over the limit is
    answered 413 before any of the body is read; a chunked body is counted as it arrives and
    answered 413 once it passes the limit, the app then seeing a disconnected client (which
    Reflex handles: it drops the upload, its handler never runs)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_UPLOAD_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != UPLOAD_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send, f"{int(declared)} bytes declared")
            return
        received = 0
        refused = False

        async def counted() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                refused = True
                await self._refuse(scope, send, f"over {self.limit} bytes sent")
                return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, unless_refused)

    async def _refuse(self, scope: Scope, send: Send, why: str) -> None:
        client = scope.get("client")
        log.warning(
            "refused an upload from %s: %s, the limit is %d bytes (max_upload_bytes)",
            client[0] if client else "-",
            why,
            self.limit,
        )
        body = f"upload over {self.limit} bytes\n".encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            # The rest of the body is not read: the connection cannot carry another request.
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def guard_events(app: Any) -> None:
    """Reflex keeps the router data of each event (path, query, and whatever else the client
    put there) in the tab's state: an event whose router data is over the limit is dropped.
    The message as a whole is bounded already (uvicorn's ws_max_size, engineio's buffer)."""
    app.sio.eio.max_http_buffer_size = MAX_WEBSOCKET_MESSAGE_BYTES
    namespace = app.event_namespace
    on_event = namespace.on_event

    def client(sid: str) -> str:
        # The address an operator can act on (the client's own behind a trusted proxy); the
        # Socket.IO session id would name nothing outside this process.
        environ = app.sio.get_environ(sid, namespace.namespace) or {}
        peer = environ.get("asgi.scope", {}).get("client")
        return str(peer[0]) if peer else "-"

    async def on_bounded_event(sid: str, data: Any) -> None:
        if not isinstance(data, dict):
            # The bundle sends objects only; Reflex would raise, and log a traceback each time.
            log.warning("dropped an event from %s: not an object", client(sid))
            return
        router_data = data.get("router_data")
        if router_data is not None and (
            not isinstance(router_data, dict)
            or len(json.dumps(router_data, default=str)) > MAX_ROUTER_DATA_BYTES
        ):
            log.warning(
                "dropped an event from %s: router data not an object of at most %d bytes",
                client(sid),
                MAX_ROUTER_DATA_BYTES,
            )
            return
        await on_event(sid, data)

    # Socket.IO finds the handler by its name on the namespace object.
    namespace.on_event = on_bounded_event
