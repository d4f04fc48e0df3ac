"""The HTTP protocol `working serve` runs: uvicorn's, bounded, answering the export's files itself.

A page or an asset is an answer prepared at start (static.py). Through ASGI each request for
one still costs a scope, a task, two messages and a response head that uvicorn rebuilds and
checks header by header in Python: most of the time spent on it. Here, on the parser's
callback for a complete request head, a GET or HEAD for a file of the export is answered with
one write (status line, uvicorn's Date, the file's prepared head and body) and one access line.

Everything else takes uvicorn's own path, unchanged: another path, an upgrade, a request
pipelined behind one not yet answered, a client not reading what it was sent, a body over one
write. There the same `FrontendFiles` answers the same bytes through ASGI (server._files_first).
A file asked for on a connection already closing (after `Connection: close`) is not answered.
"""

from __future__ import annotations

import urllib.parse
from typing import ClassVar

import httptools
from uvicorn._types import ASGI3Application
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from .access_log import AccessLog
from .limits import BoundedHttpTools
from .static import CHUNK, FrontendFiles, wire


class FilesFirst(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering the export's files before any ASGI is made."""

    files: ClassVar[FrontendFiles]
    access: ClassVar[AccessLog]
    _answered = False  # this request is answered: its body, if any, is read and dropped
    # uvicorn's default headers (the Date) as bytes, remade when uvicorn replaces its list
    # (once a second).
    _defaults: ClassVar[tuple[object, bytes]] = (None, b"")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._answered = False

    def on_headers_complete(self) -> None:
        if not self._answer():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._answered:  # answered already: the body is read and dropped, as uvicorn does
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._answered:
            super().on_message_complete()

    def _answer(self) -> bool:
        method = self.parser.get_method()
        if method not in (b"GET", b"HEAD") or self.parser.should_upgrade():
            return False
        # Answers leave in request order: not before one that uvicorn is still answering.
        answering = self.cycle is not None and not self.cycle.response_complete
        if answering or self.pipeline:
            return False
        if self.flow.write_paused:  # uvicorn's path waits for the client to read
            return False
        url = httptools.parse_url(self.url)
        path = url.path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        path = self.root_path + path
        if not self.files.match(path):
            return False
        if self.transport.is_closing():  # asked after a close: nobody will read an answer
            self._answered = True
            return True
        response = self.files.respond(method.decode(), path, self.headers)
        body = b"" if method == b"HEAD" else response.body
        if len(body) > CHUNK:
            return False
        version = self.parser.get_http_version()
        keep_alive = version != "1.0" and self.parser.should_keep_alive()
        self._answered = True
        self.transport.write(
            b"".join(
                (
                    STATUS_LINE[response.status],
                    self._default_head(),
                    response.head,
                    b"" if keep_alive else b"connection: close\r\n",
                    b"\r\n",
                    body,
                )
            )
        )
        target = url.path + b"?" + url.query if url.query else url.path
        self.access.note(
            self._client(), method.decode(), target.decode("latin-1"), version, response.status
        )
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()
        return True

    def _default_head(self) -> bytes:
        source, head = FilesFirst._defaults
        current = self.server_state.default_headers
        if source is not current:
            head = wire(current)
            FilesFirst._defaults = (current, head)
        return head

    def _client(self) -> tuple[str, int] | None:
        """The client's address as the access log of uvicorn's path has it: the forwarded one
        when the peer is a trusted proxy (uvicorn's own rules, from its proxy middleware)."""
        proxies = self.app if isinstance(self.app, ProxyHeadersMiddleware) else None
        if proxies is None or self.client is None or self.client[0] not in proxies.trusted_hosts:
            return self.client
        forwarded = [value for name, value in self.headers if name == b"x-forwarded-for"]
        if not forwarded:
            return self.client
        host, port = proxies.trusted_hosts.get_trusted_client_address(
            b", ".join(forwarded).decode("latin-1")
        )
        return (host, port) if host else self.client


class PipelineAware(HttpToolsProtocol):
    """When a client goes away, uvicorn marks only the request it parsed last as disconnected
    (httptools_impl `connection_lost`: `self.cycle`). With requests pipelined, the one being
    answered is an earlier one: it then writes to the closed transport, and uvicorn logs
    "Exception in ASGI application" with a traceback. Here that one is marked too."""

    _running: RequestResponseCycle | None = None

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        running = self._running
        if running is not None and not running.response_complete:
            running.disconnected = True
            running.message_event.set()
        super().connection_lost(exc)


def protocol(files: FrontendFiles, access: AccessLog) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`: the head limits first, then the files."""
    bases = (BoundedHttpTools, FilesFirst, PipelineAware)
    return type("WorkingHttp", bases, {"files": files, "access": access})
