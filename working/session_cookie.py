"""The session cookie, HttpOnly: set and cleared over HTTP, read from the WebSocket handshake.

Reflex's rx.Cookie is written by the page's JavaScript, so it can be neither HttpOnly nor
trusted to carry Secure. Instead:

- after a log-in (a WebSocket event) the state opens the session and hands the page a one-time
  ticket (a minute long); the page POSTs it to /_auth/session, which answers with
  `Set-Cookie: working_session=...; HttpOnly; SameSite=Strict; Path=/` (plus `Secure` when the
  request came over HTTPS, directly or as X-Forwarded-Proto from a trusted proxy), then reloads;
- the browser sends the cookie with the WebSocket handshake to /_event. Reflex copies every
  handshake header into the state's `router.headers`, which is sent to the page: the session
  cookie is taken out of the handshake's headers here and kept in the ASGI scope, where the
  state reads it on hydrate (`token_from_environ`);
- /_auth/logout ends the session the cookie names and clears the cookie.

Both endpoints accept only same-origin POSTs (the Origin header names this host): another site
can neither log a browser into its account nor out of one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from . import auth
from .runtime import db

COOKIE = "working_session"
TICKET_PATH = "/_auth/session"
LOGOUT_PATH = "/_auth/logout"
EVENT_PATH = "/_event"
_SCOPE_KEY = "working.session_token"
_MAX_BODY = 256


def transformer(allowed_origins: tuple[str, ...]) -> Callable[[ASGIApp], ASGIApp]:
    """For `rx.App(api_transformer=...)`: Reflex's backend with the cookie's endpoints."""
    return lambda asgi: wrap(asgi, allowed_origins)


def wrap(app: ASGIApp, allowed_origins: tuple[str, ...] = ()) -> ASGIApp:
    """`app` with the two endpoints in front and the session cookie taken out of /_event."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path in (TICKET_PATH, LOGOUT_PATH):
            request = Request(scope, receive)
            handler = _redeem if path == TICKET_PATH else _log_out
            response = await _guarded(request, handler, allowed_origins)
            await response(scope, receive, send)
            return
        if path.startswith(EVENT_PATH):
            _take_session_cookie(scope)
        await app(scope, receive, send)

    return dispatch


def token_from_environ(environ: Mapping[str, Any] | None) -> str:
    """The session cookie the WebSocket's handshake carried ("" if none)."""
    if not environ:
        return ""
    return str(environ.get("asgi.scope", {}).get(_SCOPE_KEY, ""))


def ticket_script(ticket: str) -> str:
    """The JavaScript the page runs after a log-in: redeem the ticket for the cookie; the
    promise resolves to whether that worked. The tab stays logged in through its own state
    either way (only other tabs and reloads need the cookie), so the page moves on by
    client-side navigation on the same WebSocket, not a reload: a reload would open a new
    connection, possibly to another replica, for nothing."""
    return (
        f"fetch({json.dumps(TICKET_PATH)}, {{method: 'POST', body: {json.dumps(ticket)}, "
        f"credentials: 'same-origin'}}).then((r) => r.ok, () => false)"
    )


def logout_script(then: str) -> str:
    return (
        f"fetch({json.dumps(LOGOUT_PATH)}, {{method: 'POST', credentials: 'same-origin'}})"
        f".finally(() => window.location.assign({json.dumps(then)}))"
    )


def _take_session_cookie(scope: Scope) -> None:
    headers = []
    for name, value in scope.get("headers", []):
        if name.lower() == b"cookie":
            kept = []
            for pair in value.decode("latin-1").split(";"):
                key, _, val = pair.strip().partition("=")
                if key == COOKIE:
                    scope[_SCOPE_KEY] = val
                elif pair.strip():
                    kept.append(pair.strip())
            if not kept:
                continue
            value = "; ".join(kept).encode("latin-1")
        headers.append((name, value))
    scope["headers"] = headers


async def _guarded(
    request: Request,
    handler: Callable[[Request], Awaitable[Response]],
    allowed_origins: tuple[str, ...],
) -> Response:
    if request.method != "POST":
        return _error(405, "use POST", {"Allow": "POST"})
    if not _same_origin(request, allowed_origins):
        return _error(403, "cross-origin request refused")
    return await handler(request)


async def _redeem(request: Request) -> Response:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            return _error(413, "the ticket is too long")
    redeemed = await db.run(auth.redeem_ticket, body.decode("utf-8", "replace").strip())
    if redeemed is None:
        return _error(403, "unknown, used or expired ticket; log in again")
    max_age = int((redeemed.expires_at - datetime.now(UTC)).total_seconds())
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.headers.append(
        "Set-Cookie", _cookie(redeemed.token, max_age, secure=request.url.scheme == "https")
    )
    return response


async def _log_out(request: Request) -> Response:
    token = request.cookies.get(COOKIE, "")
    if token:
        await db.run(auth.log_out, token)
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.headers.append("Set-Cookie", _cookie("", 0, secure=request.url.scheme == "https"))
    return response


def _cookie(value: str, max_age: int, *, secure: bool) -> str:
    flags = f"{COOKIE}={value}; Path=/; Max-Age={max(0, max_age)}; HttpOnly; SameSite=Strict"
    return flags + "; Secure" if secure else flags


def _same_origin(request: Request, allowed_origins: tuple[str, ...]) -> bool:
    origin = request.headers.get("origin", "")
    if not origin:
        return False
    if origin.rstrip("/") in allowed_origins:
        return True
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)
