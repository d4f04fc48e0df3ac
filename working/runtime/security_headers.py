"""The browser-side security headers on every HTTP response, the CSP derived from the export.

The export's pages carry inline scripts (React Router's context and hydration, Reflex's theme
script). Rather than allowing every inline script, the policy lists the SHA-256 of each one
found in the export when the server starts: a rebuilt export brings its own hashes, and a
script injected into a page matches none of them.
"""

from __future__ import annotations

import base64
import hashlib
from html.parser import HTMLParser
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _InlineScripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.bodies: list[str] = []
        self._inline = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._inline = not any(name == "src" for name, _ in attrs)
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._inline:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._inline:
            self.bodies.append("".join(self._text))
            self._inline = False


def inline_script_hashes(export: Path) -> list[str]:
    """CSP sources ('sha256-...') for every inline script of every page in the export."""
    found: set[str] = set()
    for page in sorted(export.rglob("*.html")):
        parser = _InlineScripts()
        parser.feed(page.read_text(encoding="utf-8"))
        parser.close()
        for body in parser.bodies:
            digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
            found.add(f"'sha256-{digest}'")
    return sorted(found)


def policy(export: Path) -> str:
    # 'unsafe-eval': Reflex's event protocol runs the code of rx.call_script, rx.call_function
    # and event callbacks with eval() (reflex_base 0.9.2, .templates/web/utils/state.js), and
    # the log-in flow uses rx.call_script. What is eval'd comes from the server's own events;
    # an injected <script> element still matches no hash and is refused.
    scripts = " ".join(["'self'", "'unsafe-eval'", *inline_script_hashes(export)])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            # Radix and Emotion set styles at run time, as style elements and attributes.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            # 'self' covers the same-origin WebSocket (ws: or wss:) of /_event.
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def headers(export: Path) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", policy(export).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ]


class SecurityHeaders:
    """Adds the headers to each HTTP response that does not already set them (the backend's;
    the static files carry them already, see static.py)."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                extra = [h for h in self.headers if h[0] not in present]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
