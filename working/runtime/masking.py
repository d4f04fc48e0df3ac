"""Keep credentials out of everything a human or a log collector can read."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# user:password@ in any scheme://, and password=... or token=... in query strings or libpq DSNs
# (a Reflex tab's token, in the URL of its WebSocket, is the key to that tab's state).
_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]+)@"
)
_SECRET_PARAM = re.compile(
    r"(?P<key>\b(?:password|\w*token|\w*session)\s*=\s*)(?P<pw>[^&\s'\"]+)", re.IGNORECASE
)
# A quoted key naming a secret, then its quoted value, as in the dict or JSON text of an event
# that Reflex prints whole: its tab token, and the request headers with the session cookie.
_SECRET_ITEM = re.compile(
    r"(?P<key>['\"](?:[^'\"\s]*(?:token|password|secret)[^'\"\s]*|cookie|authorization)['\"]"
    r"\s*:\s*['\"])(?P<value>[^'\"]+)",
    re.IGNORECASE,
)

_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it appears, in any shape."""
    if value and len(value) >= 4:
        _known_secrets.add(value)


def mask_url(url: str) -> str:
    """postgresql://app:s3cret@db/app -> postgresql://app:***@db/app."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_text(url)
    if parts.password is None:
        return mask_text(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:{MASK}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return mask_text(urlunsplit(parts._replace(netloc=netloc)))


def mask_text(text: str) -> str:
    """Mask every credential found in free text (log lines, error messages)."""
    # The substring tests are cheap and skip the regular expressions on most lines.
    if "://" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: f"{m['key']}{MASK}", text)
    if "':" in text or '":' in text:
        text = _SECRET_ITEM.sub(lambda m: f"{m['key']}{MASK}", text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def describe(exc: BaseException) -> str:
    """The first line of an error, masked: enough to act on, never a traceback or a password."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return mask_text(first)
