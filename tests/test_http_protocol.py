"""The export's files answered by the HTTP protocol itself (http_protocol.py), over real sockets.

A real uvicorn server runs the runtime's protocol class in a thread, with the export's files
and a backend whose /slow answers late; the tests speak raw HTTP/1.x to it, pipelining
requests, closing, or not reading at all, and compare with what uvicorn's own ASGI path sends.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from margins import within

from services import free_port
from working.runtime import http_protocol
from working.runtime.access_log import AccessLog
from working.runtime.static import CHUNK, FrontendFiles

_KEEP_ALIVE_S = 1
_SMALL = 256 * 1024
_LARGE = 24 * 1024 * 1024


@dataclass
class Served:
    port: int
    server: uvicorn.Server
    asgi_file_answers: list[str]  # paths the files answered through ASGI, not the protocol

    def exchange(self, data: bytes, *, timeout: float = 10) -> list[Answer]:
        """Send `data`, read until the server closes (the keep-alive timeout ends it)."""
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(data)
            sock.settimeout(timeout)
            received = bytearray()
            while chunk := sock.recv(65536):
                received += chunk
        heads = [line.split(b" ")[0] for line in data.split(b"\r\n") if b" HTTP/1." in line]
        return _parse(bytes(received), [method == b"HEAD" for method in heads])


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)


def _parse(data: bytes, heads: list[bool]) -> list[Answer]:
    answers = []
    for is_head in heads:
        if not data:
            break
        head, _, data = data.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 "), f"not an answer: {status_line[:80]!r}"
        headers = [tuple(line.split(b": ", 1)) for line in lines]
        answer = Answer(int(status_line.split(b" ")[1]), headers, b"")  # type: ignore[arg-type]
        length = 0 if is_head else int(answer.header(b"content-length") or 0)
        answer.body, data = data[:length], data[length:]
        answers.append(answer)
    assert not data, f"bytes after the last answer: {data[:80]!r}"
    return answers


def _request(method: str, path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _export(root: Path) -> Path:
    (root / "index.html").write_text("<html>home</html>")
    (root / "about.html").write_text("<html>about</html>" * 50)
    (root / "about.html.gz").write_bytes(b"gzipped about")
    (root / "assets").mkdir()
    (root / "assets" / "small.bin").write_bytes(b"s" * _SMALL)
    (root / "assets" / "large.bin").write_bytes(b"L" * _LARGE)
    return root


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    files = FrontendFiles(_export(tmp_path), [(b"x-frame-options", b"DENY")])
    through_asgi: list[str] = []

    async def backend(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["path"] == "/slow":
            await asyncio.sleep(0.3)
        body = scope["path"].encode()
        length = (b"content-length", str(len(body)).encode())
        await send({"type": "http.response.start", "status": 200, "headers": [length]})
        await send({"type": "http.response.body", "body": body})

    async def dispatch(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and files.match(scope["path"]):
            through_asgi.append(scope["path"])
            await files(scope, receive, send)
        else:
            await backend(scope, receive, send)

    access = AccessLog(dispatch, "text")
    port = free_port()
    config = uvicorn.Config(
        access,
        port=port,
        http=http_protocol.protocol(files, access),
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=_KEEP_ALIVE_S,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield Served(port, server, through_asgi)
    server.should_exit = True
    thread.join(5)


def _without_date(answer: Answer) -> list[tuple[bytes, bytes]]:
    return [(n, v) for n, v in answer.headers if n != b"date"]


def test_a_file_is_answered_by_the_protocol_with_the_bytes_asgi_would_send(
    served: Served,
) -> None:
    about = _request("GET", "/about", "Accept-Encoding: gzip")
    alone = served.exchange(about)
    assert served.asgi_file_answers == []  # answered without ASGI
    # Pipelined behind a request still being answered, it waits its turn on uvicorn's path.
    behind = served.exchange(_request("GET", "/slow") + about)
    assert served.asgi_file_answers == ["/about"]
    assert [a.body for a in behind] == [b"/slow", b"gzipped about"]
    assert alone[0].body == b"gzipped about"
    assert _without_date(alone[0]) == _without_date(behind[1])
    assert alone[0].header(b"x-frame-options") == b"DENY"
    assert alone[0].header(b"date") is not None


def test_several_files_on_one_connection_come_back_in_order(served: Served) -> None:
    paths = ["/", "/about", "/slow", "/index.html", "/assets/small.bin", "/"]
    answers = served.exchange(b"".join(_request("GET", p) for p in paths))
    assert [len(a.body) for a in answers] == [17, 900, 5, 17, _SMALL, 17]


@pytest.mark.parametrize(
    "request_bytes",
    [
        _request("GET", "/", version="1.0"),
        _request("GET", "/", "Connection: close"),
    ],
    ids=["http-1.0", "connection-close"],
)
def test_a_request_that_asks_for_close_is_answered_then_closed(
    served: Served, request_bytes: bytes
) -> None:
    started = time.monotonic()
    (answer,) = served.exchange(request_bytes + _request("GET", "/about"))
    assert answer.header(b"connection") == b"close"
    assert answer.body == b"<html>home</html>"
    assert time.monotonic() - started < _KEEP_ALIVE_S  # closed at once, not left idle


def test_a_kept_alive_connection_is_closed_once_idle_for_the_keep_alive_timeout(
    served: Served,
) -> None:
    started = time.monotonic()
    answers = served.exchange(_request("GET", "/") + _request("GET", "/about"))
    took = time.monotonic() - started
    assert [a.status for a in answers] == [200, 200]
    assert answers[0].header(b"connection") is None
    assert _KEEP_ALIVE_S * 0.9 < took < within(_KEEP_ALIVE_S + 2)


def test_head_304_and_a_dropped_request_body_leave_the_connection_in_step(
    served: Served,
) -> None:
    (first,) = served.exchange(_request("GET", "/about"))
    etag = first.header(b"etag")
    assert etag is not None
    answers = served.exchange(
        _request("HEAD", "/about")
        + _request("GET", "/about", f"If-None-Match: {etag.decode()}")
        + _request("GET", "/about", "Content-Length: 5")
        + b"hello"
        + _request("GET", "/index.html")
    )
    assert [(a.status, a.body) for a in answers] == [
        (200, b""),
        (304, b""),
        (200, first.body),
        (200, b"<html>home</html>"),
    ]
    assert answers[0].header(b"content-length") == str(len(first.body)).encode()
    assert answers[1].header(b"content-length") is None


@pytest.mark.parametrize(
    ("path", "count"),
    [("/assets/small.bin", 200), ("/assets/large.bin", 1)],
    ids=["small-files-pipelined", "one-large-file"],
)
def test_a_client_that_reads_nothing_is_not_buffered_for(
    served: Served, path: str, count: int
) -> None:
    """What a client asks for and does not read waits in the kernel and at most about one
    chunk in the server's own buffer: not every answer it asked for, not a whole large file."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(("127.0.0.1", served.port))
    try:
        sock.sendall(b"".join(_request("GET", path) for _ in range(count)))
        time.sleep(1)
        buffered = max(
            conn.transport.get_write_buffer_size()
            for conn in list(served.server.server_state.connections)
        )
        assert buffered <= 2 * CHUNK, f"{buffered} bytes buffered for a client reading nothing"
    finally:
        sock.close()


def test_a_client_gone_with_answers_pending_leaves_no_error_and_no_task(served: Served) -> None:
    """Pipelined requests it never read, then gone: the answer uvicorn was waiting to write
    ends quietly (uvicorn alone logs "Exception in ASGI application" and a traceback)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.connect(("127.0.0.1", served.port))
        sock.sendall(b"".join(_request("GET", "/assets/small.bin") for _ in range(200)))
        time.sleep(1)  # the server has stopped writing: an answer waits for the client to read
        assert served.server.server_state.tasks, "no answer was waiting on uvicorn's path"
        sock.close()
        deadline = time.monotonic() + within(5)
        while served.server.server_state.tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not served.server.server_state.tasks
        assert [r.getMessage() for r in records] == []
    finally:
        logger.removeHandler(handler)
