"""A small asyncio client for a Reflex 0.9 app's Socket.IO endpoint (`/_event`).

It speaks what the browser bundle speaks (reflex_base/.templates/web/utils/state.js):

- connect to `<url>/_event` (Socket.IO path and namespace `/_event`) over the websocket
  transport with `?token=<uuid>` (the tab's token) and an `Origin` equal to the server URL
  (the server checks same-origin);
- send `event` messages `{"name": "<full state name>.<handler>", "payload": {...},
  "router_data": {"pathname": ..., "asPath": ...}}`;
- receive `event` messages holding a state update `{"delta": {state: {var: value}},
  "events": [frontend events]}`; a `new_token` message replaces the token.

Reflex 0.9 sends no end-of-event marker (`final` is deprecated and never sent). Events of one
token run one after another, in order, and a handler's update arrives once it has changed
state, so `event()` waits for the first update that satisfies `until` (by default: any update
with a delta or frontend events). Updates left over from an earlier event (e.g. the `_redirect`
that follows a login's delta) are moved to `stray` before the next event is sent.

    async with ReflexClient("http://127.0.0.1:3000", client_storage=client_storage_vars()) as c:
        await c.hydrate("/signup")
        await c.event(full_name("AuthState.sign_up"), {"form": {...}}, until=logged_in)
        updates = await c.event(full_name("NotesState.add"), {"form": {"body": "hi"}})
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

import socketio

Update = dict[str, Any]
Predicate = Callable[[list[Update]], bool]

ROOT_STATE = "reflex___state____state"
HYDRATE = f"{ROOT_STATE}.hydrate"
ON_LOAD_INTERNAL = f"{ROOT_STATE}.reflex___state____on_load_internal_state.on_load_internal"
UPDATE_VARS_INTERNAL = (
    f"{ROOT_STATE}.reflex___state____update_vars_internal_state.update_vars_internal"
)
FIELD_MARKER = "_rx_state_"
_HYDRATED = "is_hydrated_rx_state_"
# The browser connects to `<origin>/_event`: Socket.IO path and namespace are both `/_event`.
NAMESPACE = "/_event"
_TICKET = re.compile(r"body: \"([A-Za-z0-9_-]+)\"")


class ReflexClientError(Exception):
    """The connection failed, or an event's update did not arrive in time."""


def any_update(updates: list[Update]) -> bool:
    """Done at the first update that carries a delta or frontend events."""
    return any(u.get("delta") or u.get("events") for u in updates)


def redirected(updates: list[Update]) -> bool:
    """Done when the server has sent a frontend `_redirect` (e.g. after sign up or log in)."""
    return any(e.get("name") == "_redirect" for u in updates for e in u.get("events") or ())


def logged_in(updates: list[Update]) -> bool:
    """Done when a log-in or sign-up succeeded: the server sends the page the script that
    redeems the session's one-time ticket for its HttpOnly cookie (working/session_cookie.py)."""
    return bool(ticket_of(updates))


def ticket_of(updates: list[Update]) -> str:
    """The one-time ticket in a log-in's script ("" if none)."""
    for update in updates:
        for event in update.get("events") or ():
            code = (event.get("payload") or {}).get("javascript_code") or ""
            if event.get("name") == "_call_script" and (found := _TICKET.search(code)):
                return found.group(1)
    return ""


def hydrated(updates: list[Update]) -> bool:
    """Done when the root state reports `is_hydrated` (the page's on_load handlers ran)."""
    return any((u.get("delta") or {}).get(ROOT_STATE, {}).get(_HYDRATED) is True for u in updates)


def full_name(dotted: str, module: str = "working.working") -> str:
    """`"NotesState.add"` -> Reflex's full handler name, e.g.
    `"reflex___state____state.working___working____auth_state.working___working____notes_state.add"`.

    Imports `module` (the app's state classes) once; the name is `<cls>.get_full_name()`
    followed by the handler (or var) name.
    """
    cls_name, _, handler = dotted.partition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    name: str = cls.get_full_name()
    return f"{name}.{handler}" if handler else name


def client_storage_vars(module: str = "working.working") -> frozenset[str]:
    """The client-storage vars (rx.Cookie, rx.LocalStorage, ...) of the state classes defined
    in `module`, keyed as the browser keys them: `<full state name>.<var>_rx_state_`."""
    from reflex.state import BaseState

    mod = importlib.import_module(module)
    keys: set[str] = set()
    for obj in vars(mod).values():
        if isinstance(obj, type) and issubclass(obj, BaseState) and obj.__module__ == module:
            keys.update(
                f"{obj.get_full_name()}.{var}{FIELD_MARKER}"
                for var in obj.base_vars
                if obj._is_client_storage(var)
            )
    return frozenset(keys)


def delta_for(updates: list[Update], state: str) -> dict[str, Any]:
    """The merged delta of one state (full name) over `updates`, with the `_rx_state_`
    suffix Reflex adds to var names removed."""
    merged: dict[str, Any] = {}
    for update in updates:
        for key, value in ((update.get("delta") or {}).get(state) or {}).items():
            merged[key.removesuffix(FIELD_MARKER)] = value
    return merged


class ReflexClient:
    """One browser tab: one token, one Socket.IO connection to `/_event`."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        origin: str | None = None,
        connect_timeout: float = 10.0,
        path: str = "/",
        client_storage: frozenset[str] = frozenset(),
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token or str(uuid.uuid4())
        self.origin = origin or self.url
        self.connect_timeout = connect_timeout
        self.path = path
        # More handshake headers, e.g. the Cookie a browser sends with the WebSocket.
        self.headers = headers or {}
        self.stray: list[Update] = []
        # The browser keeps cookie/local-storage vars across hydrations and sends them back
        # with `update_vars_internal` (hydrate clears them on the server): so does this client.
        self.client_storage_keys = client_storage
        self.storage: dict[str, Any] = {}
        self._updates: asyncio.Queue[Update] = asyncio.Queue()
        self._sio = socketio.AsyncClient(reconnection=False)
        self._sio.on("event", self._on_event, namespace=NAMESPACE)
        self._sio.on("new_token", self._on_new_token, namespace=NAMESPACE)

    async def _on_event(self, update: Update) -> None:
        if self.client_storage_keys:
            for state, changed in (update.get("delta") or {}).items():
                for var, value in changed.items():
                    if (key := f"{state}.{var}") in self.client_storage_keys:
                        self.storage[key] = value
        await self._updates.put(update)

    async def _on_new_token(self, token: str) -> None:
        self.token = token

    async def connect(self) -> None:
        try:
            await self._sio.connect(
                f"{self.url}?token={self.token}",
                headers={"Origin": self.origin, **self.headers},
                transports=["websocket"],
                namespaces=[NAMESPACE],
                socketio_path=NAMESPACE,
                wait_timeout=self.connect_timeout,
            )
        except (TimeoutError, socketio.exceptions.ConnectionError, OSError) as exc:
            await self.close()
            raise ReflexClientError(f"cannot connect to {self.url}/_event: {exc}") from exc

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._sio.disconnect()

    async def __aenter__(self) -> ReflexClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return bool(self._sio.connected)

    async def send(self, name: str, payload: dict[str, Any] | None = None) -> None:
        """Emit one event without waiting for its update."""
        event = {
            "name": name,
            "payload": payload or {},
            "router_data": {"pathname": self.path, "asPath": self.path},
        }
        await self._sio.emit("event", event, namespace=NAMESPACE)

    async def event(
        self,
        name: str,
        payload: dict[str, Any] | None = None,
        *,
        until: Predicate = any_update,
        timeout: float = 10.0,
    ) -> list[Update]:
        """Send one event and return its updates, up to the first one that satisfies `until`.

        Raises ReflexClientError if that does not happen within `timeout` seconds.
        """
        self._drain()
        await self.send(name, payload)
        return await self.wait(until, timeout=timeout, what=name)

    async def wait(
        self, until: Predicate = any_update, *, timeout: float = 10.0, what: str = "update"
    ) -> list[Update]:
        """Collect updates until `until(updates)` holds."""
        deadline = time.monotonic() + timeout
        updates: list[Update] = []
        while not until(updates):
            left = deadline - time.monotonic()
            # Updates that arrived before the server closed the socket still count.
            if left <= 0 or (not self.connected and self._updates.empty()):
                state = "timed out" if self.connected else "disconnected"
                raise ReflexClientError(
                    f"{what}: {state} after {timeout:g}s with {len(updates)} update(s)"
                )
            try:
                updates.append(await asyncio.wait_for(self._updates.get(), min(left, 0.5)))
            except TimeoutError:
                continue
        return updates

    async def hydrate(self, path: str = "/", *, timeout: float = 10.0) -> list[Update]:
        """What the browser does on page load: `hydrate`, `update_vars_internal` with the
        client-storage values it holds (e.g. the session cookie), then `on_load_internal`
        (which runs the page's on_load handlers); returns the updates up to `is_hydrated`."""
        self.path = path
        self._drain()
        await self.send(HYDRATE)
        if stored := {k: v for k, v in self.storage.items() if v not in (None, "")}:
            await self.send(UPDATE_VARS_INTERNAL, {"vars": stored})
        await self.send(ON_LOAD_INTERNAL)
        return await self.wait(hydrated, timeout=timeout, what=f"hydrate {path}")

    def _drain(self) -> None:
        while not self._updates.empty():
            self.stray.append(self._updates.get_nowait())
