"""The prebuilt frontend export, served from memory by the same process as the backend.

The export is immutable (a read-only store path in the image) and small, so it is read once at
start: each request is a dictionary lookup and a write, with no filesystem access, no thread
hop and no path to traverse out of. The build writes `.br` and `.gz` siblings of every
compressible file; a client that accepts them gets them as they are, never compressed per
request.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from starlette.types import Receive, Scope, Send

# Vite names every asset by its content hash, so a cached copy can never be stale.
_IMMUTABLE = b"public, max-age=31536000, immutable"
# Pages name those assets: revalidate them, so a deploy is visible on the next load.
_REVALIDATE = b"no-cache"
# The order in which encodings are preferred when the client accepts several.
_ENCODINGS = (("br", ".br"), ("gzip", ".gz"))
# Bodies go out in writes of at most this much: one write for every file of a usual export,
# while a slow reader of a huge file holds back the response instead of megabytes of buffer.
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Response:
    """A whole answer, prepared at start. `head` is `headers` as they go on the wire, for the
    HTTP protocol's own answer (http_protocol.py); ASGI takes the list."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    head: bytes

    @classmethod
    def of(cls, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> Response:
        return cls(status, headers, body, wire(headers))


def wire(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Header lines as HTTP/1.1 writes them: `name: value` and CRLF each."""
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


@dataclass(frozen=True)
class _Variant:
    ok: Response
    not_modified: Response
    etag: bytes


@dataclass
class _File:
    variants: dict[str, _Variant] = field(default_factory=dict)  # "" is the identity encoding


class FrontendFiles:
    """The export's answers by route (/notes -> notes.html), 404.html last; an ASGI app too."""

    def __init__(
        self,
        directory: Path,
        headers: list[tuple[bytes, bytes]] | None = None,
        reserved: frozenset[str] = frozenset(),
        dynamic: tuple[str, ...] = (),
    ) -> None:
        if not is_export(directory):
            raise FileNotFoundError(f"{directory} is not a frontend export")
        # Sent with every file (the security headers): joined once here, not per request.
        self._extra = headers or []
        # Paths the server answers itself (/health, /livez): never a file, even where the
        # app's export has a page at one of them.
        self._reserved = reserved | {path + "/" for path in reserved}
        self._files: dict[str, _File] = {}
        for path in sorted(directory.rglob("*")):
            if path.is_file() and path.suffix not in (".br", ".gz"):
                self._add(directory, path)
        self._not_found = self._files.get("/404.html")
        self._plain_not_found = Response.of(
            404, [(b"content-type", b"text/plain"), *self._extra], b"Not Found"
        )
        self._not_allowed = Response.of(405, [(b"allow", b"GET, HEAD"), *self._extra], b"")
        # The app's dynamic routes (/item/[id]) have no page of their own in the export: the
        # SPA shell renders them in the browser, and a direct link or a reload is a 200.
        self._shell = self._files.get("/__spa-fallback.html")
        self._dynamic = [_route_pattern(route) for route in dynamic] if self._shell else []

    def _add(self, root: Path, path: Path) -> None:
        relative = path.relative_to(root).as_posix()
        cache = _IMMUTABLE if relative.startswith("assets/") else _REVALIDATE
        content_type = _content_type(path)
        entry = _File()
        compressed = any(path.with_name(path.name + s).is_file() for _, s in _ENCODINGS)
        for encoding, suffix in (("", ""), *_ENCODINGS):
            source = path.with_name(path.name + suffix)
            if not source.is_file():
                continue
            body = source.read_bytes()
            etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
            headers = [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", cache),
                (b"etag", etag),
            ]
            if encoding:
                headers.append((b"content-encoding", encoding.encode()))
            if compressed:
                headers.append((b"vary", b"Accept-Encoding"))
            headers.extend(self._extra)
            unchanged = [h for h in headers if h[0] != b"content-length"]
            entry.variants[encoding] = _Variant(
                Response.of(200, headers, body), Response.of(304, unchanged, b""), etag
            )
        for route in _routes(relative):
            if route not in self._reserved:
                self._files.setdefault(route, entry)

    def match(self, path: str) -> bool:
        return path in self._files

    def respond(
        self, method: str, path: str, request_headers: Iterable[tuple[bytes, bytes]]
    ) -> Response:
        """The answer to `method path` with these (lower-cased) request headers: a lookup."""
        if method not in ("GET", "HEAD"):
            return self._not_allowed
        entry = self._files.get(path)
        found = True
        if entry is None and any(p.fullmatch(path) for p in self._dynamic):
            entry = self._shell
        if entry is None:
            if self._not_found is None:
                return self._plain_not_found
            entry, found = self._not_found, False
        accept_encoding = if_none_match = b""
        for name, value in request_headers:
            if name == b"accept-encoding":
                accept_encoding = value
            elif name == b"if-none-match":
                if_none_match = value
        variant = _negotiate(entry, accept_encoding)
        if not found:
            return replace(variant.ok, status=404)
        if if_none_match and variant.etag in if_none_match:
            return variant.not_modified
        return variant.ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        response = self.respond(scope["method"], scope["path"], scope["headers"])
        await send(
            {"type": "http.response.start", "status": response.status, "headers": response.headers}
        )
        body = b"" if scope["method"] == "HEAD" else response.body
        if len(body) <= CHUNK:
            await send({"type": "http.response.body", "body": body})
            return
        view = memoryview(body)
        for offset in range(0, len(body), CHUNK):
            more = offset + CHUNK < len(body)
            chunk = view[offset : offset + CHUNK]
            await send({"type": "http.response.body", "body": bytes(chunk), "more_body": more})


def _negotiate(entry: _File, accept_encoding: bytes) -> _Variant:
    if len(entry.variants) > 1 and accept_encoding:
        accepted = {
            token.split(b";", 1)[0].strip()
            for token in accept_encoding.lower().split(b",")
            if not token.strip().endswith((b"q=0", b"q=0.0"))
        }
        for encoding, _ in _ENCODINGS:
            if encoding.encode() in accepted and encoding in entry.variants:
                return entry.variants[encoding]
    return entry.variants[""]


def _route_pattern(route: str) -> re.Pattern[str]:
    """Reflex's route syntax as a path pattern: [id] one segment, [...rest] one or more,
    [[...rest]] any number; a trailing slash either way."""
    parts = []
    for segment in route.strip("/").split("/"):
        if segment.startswith("[[..."):
            parts.append("(?:/.*)?")
        elif segment.startswith("[..."):
            parts.append("/.+")
        elif segment.startswith("["):
            parts.append("/[^/]+")
        else:
            parts.append("/" + re.escape(segment))
    return re.compile("".join(parts) + "/?")


def _routes(relative: str) -> list[str]:
    """The URL paths a file answers: itself, and for pages its route with and without a slash."""
    routes = [f"/{relative}"]
    if relative == "index.html":
        routes.append("/")
    elif relative.endswith("/index.html"):
        routes.append(f"/{relative.removesuffix('index.html')}")
    elif (
        relative.endswith(".html")
        and "/" not in relative
        and not relative.startswith(("404", "__"))
    ):
        routes.append(f"/{relative.removesuffix('.html')}")
    return routes


def _content_type(path: Path) -> bytes:
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if guessed.startswith("text/") or guessed in (
        "application/javascript",
        "image/svg+xml",
        "application/json",
        "application/xml",
    ):
        guessed += "; charset=utf-8"
    return guessed.encode()


def is_export(directory: Path) -> bool:
    """True when `directory` holds a frontend export (an index page and its assets)."""
    return (directory / "index.html").is_file() and (directory / "assets").is_dir()
