"""The browser-side security headers on every HTTP response, the CSP derived from the export.

The policy allows what the export itself loads, and no more:
- inline scripts (React Router's context and hydration, Reflex's theme script) by the SHA-256 of
  each one found in the export's pages when the server starts, so a rebuilt export brings its
  own hashes and a script injected into a page matches none of them;
- the other origins its pages and stylesheets name (an `rx.App(stylesheets=[...])` URL becomes
  an `@import` in the export's CSS, a head component a `<link>` or `<script src>`);
- `data:` scripts only when the app has a dynamic component: Reflex evaluates an
  `rx.Component` state var with `import("data:text/javascript,...")` (state.js
  `evalReactComponent`, which every bundle holds, so the export alone cannot tell);
- what the app declares in rxconfig.py as `content_security_policy={directive: [sources]}`,
  for what no file of the export names (an API the app's own code fetches, an embedding site).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ConfigError

# The rxconfig.py field where an app adds sources (rx.Config keeps unknown keyword arguments).
CONFIG_FIELD = "content_security_policy"

_BASE: dict[str, list[str]] = {
    "default-src": ["'self'"],
    # 'unsafe-eval': Reflex's event protocol runs the code of rx.call_script, rx.call_function
    # and event callbacks with eval() (reflex_base 0.9.2, .templates/web/utils/state.js), and
    # the log-in flow uses rx.call_script. What is eval'd comes from the server's own events;
    # an injected <script> element still matches no hash and is refused.
    "script-src": ["'self'", "'unsafe-eval'"],
    # Radix and Emotion set styles at run time, as style elements and attributes.
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'", "data:"],
    # 'self' covers the same-origin WebSocket (ws: or wss:) of /_event.
    "connect-src": ["'self'"],
    "media-src": ["'self'"],
    "frame-src": ["'self'"],
    "worker-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# What an app may not widen: plugins and <base> have no use in a Reflex page and are classic
# ways around a policy; inline script beyond the export's hashes is what the policy is for.
_FIXED = {"object-src", "base-uri"}
_REFUSED_SOURCES = {"script-src": {"'unsafe-inline'", "*", "http:", "https:"}}
# A stylesheet host whose CSS loads its fonts from another: Google Fonts, the common case of an
# app's external stylesheet (its CSS names fonts.gstatic.com, which no export file shows).
_FONT_COMPANIONS = {"https://fonts.googleapis.com": "https://fonts.gstatic.com"}
_CSS_IMPORT = re.compile(r"""@import\s+(?:url\()?\s*['"]?(?P<url>[^'")\s;]+)""")
_CSS_URL = re.compile(r"""url\(\s*['"]?(?P<url>[^'")\s]+)""")
_SOURCE = re.compile(
    r"^(?:'[a-z0-9-]+(?:-[A-Za-z0-9+/=]+)?'|[a-z][a-z0-9+.-]*:(?://\S+)?|\*|\S+\.\S+)$"
)


class _Page(HTMLParser):
    """The inline script bodies of one page, and the external sources it names, by directive."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.inline_scripts: list[str] = []
        self.sources: dict[str, set[str]] = {}
        self._inline = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "script":
            self._inline = "src" not in values
            self._text = []
            self._add("script-src", values.get("src"))
        elif tag == "link":
            rel = set(values.get("rel", "").lower().split())
            kind = values.get("as", "").lower()
            if "stylesheet" in rel or kind == "style":
                self._add("style-src", values.get("href"))
            elif kind == "font":
                self._add("font-src", values.get("href"))
            elif kind == "script" or "modulepreload" in rel:
                self._add("script-src", values.get("href"))
            elif rel & {"icon", "apple-touch-icon"} or kind == "image":
                self._add("img-src", values.get("href"))
        elif tag in ("img", "source"):
            self._add("img-src", values.get("src"))

    def handle_data(self, data: str) -> None:
        if self._inline:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._inline:
            self.inline_scripts.append("".join(self._text))
            self._inline = False

    def _add(self, directive: str, url: str | None) -> None:
        origin = _external_origin(url)
        if origin:
            self.sources.setdefault(directive, set()).add(origin)


def _external_origin(url: str | None) -> str | None:
    """https://fonts.googleapis.com for https://fonts.googleapis.com/css2?...; None if local."""
    if not url:
        return None
    if url.startswith("//"):
        url = "https:" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def inline_script_hashes(export: Path) -> list[str]:
    """CSP sources ('sha256-...') for every inline script of every page in the export."""
    return sorted(_scan(export)[0])


def _scan(export: Path) -> tuple[set[str], dict[str, set[str]]]:
    hashes: set[str] = set()
    sources: dict[str, set[str]] = {}
    for page in sorted(export.rglob("*.html")):
        parser = _Page()
        parser.feed(page.read_text(encoding="utf-8"))
        parser.close()
        for body in parser.inline_scripts:
            digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
            hashes.add(f"'sha256-{digest}'")
        for directive, found in parser.sources.items():
            sources.setdefault(directive, set()).update(found)
    for sheet in export.rglob("*.css"):
        text = sheet.read_text(encoding="utf-8", errors="replace")
        imported = {m["url"] for m in _CSS_IMPORT.finditer(text)}
        for url in imported:
            if origin := _external_origin(url):
                sources.setdefault("style-src", set()).add(origin)
        for match in _CSS_URL.finditer(text):
            if match["url"] in imported:
                continue
            if origin := _external_origin(match["url"]):
                kind = "font-src" if _is_font(match["url"]) else "img-src"
                sources.setdefault(kind, set()).add(origin)
    for host, fonts in _FONT_COMPANIONS.items():
        if host in sources.get("style-src", ()):
            sources.setdefault("font-src", set()).add(fonts)
    return hashes, sources


def _is_font(url: str) -> bool:
    return urlsplit(url).path.lower().endswith((".woff2", ".woff", ".ttf", ".otf", ".eot"))


def declared_sources(config: object) -> dict[str, list[str]]:
    """The app's `content_security_policy` from rxconfig.py, checked: one line for what is wrong."""
    declared = getattr(config, CONFIG_FIELD, None)
    if declared is None:
        return {}
    where = f"rxconfig.py: {CONFIG_FIELD}"
    if not isinstance(declared, Mapping):
        raise ConfigError(
            where, f"is a {type(declared).__name__}", '{"directive": ["source", ...]}'
        )
    checked: dict[str, list[str]] = {}
    for directive, value in declared.items():
        sources = [value] if isinstance(value, str) else value
        if directive not in _BASE or directive in _FIXED:
            allowed = ", ".join(sorted(set(_BASE) - _FIXED))
            raise ConfigError(
                f"{where}[{directive!r}]",
                "is not a directive an app may extend",
                f"one of {allowed}",
            )
        if not isinstance(sources, Iterable) or not all(isinstance(s, str) for s in sources):
            raise ConfigError(
                f"{where}[{directive!r}]", "is not a list of sources", '["https://host"]'
            )
        for source in sources:
            if not _SOURCE.match(source):
                raise ConfigError(
                    f"{where}[{directive!r}]",
                    f"has {source!r}, which is not a CSP source",
                    "an origin such as https://api.example.com, a scheme such as data:, or a "
                    "quoted keyword such as 'self'",
                )
            if source in _REFUSED_SOURCES.get(directive, ()):
                raise ConfigError(
                    f"{where}[{directive!r}]",
                    f"has {source}, which would let any injected script run",
                    "the origins the app loads scripts from",
                )
        checked[directive] = list(sources)
    return checked


class Policy:
    """The Content-Security-Policy for one export and one app's declared sources."""

    def __init__(
        self,
        export: Path,
        declared: Mapping[str, list[str]] | None = None,
        *,
        dynamic_components: bool = False,
    ) -> None:
        hashes, found = _scan(export)
        if dynamic_components:
            found.setdefault("script-src", set()).add("data:")
        self.found = {k: sorted(v) for k, v in found.items()}
        self.declared = dict(declared or {})
        self.hash_count = len(hashes)
        directives = {name: list(sources) for name, sources in _BASE.items()}
        directives["script-src"] += sorted(hashes)
        for extra in (self.found, self.declared):
            for name, sources in extra.items():
                if name == "frame-ancestors" and "'none'" in directives[name]:
                    directives[name] = []
                directives[name] += [s for s in sources if s not in directives[name]]
        self.directives = directives

    def header(self) -> str:
        return "; ".join(f"{name} {' '.join(sources)}" for name, sources in self.directives.items())

    def summary(self) -> str:
        """One log line's worth: what the policy allows beyond its base, and from where."""
        parts = [f"{self.hash_count} inline-script hashes"]
        for label, extra in (("from the export", self.found), ("declared", self.declared)):
            if extra:
                listed = "; ".join(f"{k} {' '.join(v)}" for k, v in sorted(extra.items()))
                parts.append(f"{label}: {listed}")
        return ", ".join(parts)


def headers(policy: Policy) -> list[tuple[bytes, bytes]]:
    secure = [
        (b"content-security-policy", policy.header().encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
    ]
    if policy.directives["frame-ancestors"] == ["'none'"]:
        # For browsers without CSP Level 2; an app that lets a site embed it declares that site
        # in frame-ancestors, which this header could not express.
        secure.append((b"x-frame-options", b"DENY"))
    return secure


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
