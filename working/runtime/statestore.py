"""Where Reflex keeps the tabs' state. With REDIS_URL: Redis, shared, and the bounded wait
for it at start; without: this process's memory, each state dropped soon after its tab is gone.

(Failover of browser sessions between replicas is in failover.py; the /health probe in health.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import gc
import time
from typing import Any

from .waiting import wait_until_reachable

_CONNECT_TIMEOUT_S = 3


def ping(url: str) -> float:
    """One PING on a fresh connection; returns the latency in milliseconds."""
    import redis

    client = redis.Redis.from_url(
        url, socket_connect_timeout=_CONNECT_TIMEOUT_S, socket_timeout=_CONNECT_TIMEOUT_S
    )
    try:
        started = time.perf_counter()
        client.ping()
        return (time.perf_counter() - started) * 1000
    finally:
        client.close()


def wait_for_redis(url: str, timeout: float) -> None:
    wait_until_reachable(
        "redis",
        lambda: ping(url),
        timeout,
        "check REDIS_URL and that Redis accepts connections, or raise DB_WAIT_TIMEOUT",
    )


# -- Without Redis: tab states in this process's memory, returned when their tab is gone ------


def expire_idle_states(app: Any, ttl: float) -> None:
    """Replace Reflex's in-memory state manager (before any tab connected) with one that drops a
    tab's state `ttl` seconds after its last event once its WebSocket is closed; an open tab's
    state is kept however long it idles. Reflex's own keeps every state for an hour after its
    last event, whoever created it, so anybody could make the server hold memory at will."""
    from reflex.istate.manager.memory import StateManagerMemory

    namespace = app.event_namespace

    @dataclasses.dataclass
    class _ExpiringMemory(StateManagerMemory):
        # The earliest deadline given to an open tab during the current purge pass.
        _renewed: float | None = dataclasses.field(default=None, init=False)

        def _purge_token(self, token: Any) -> None:
            # Reflex calls this once it has found the state past its deadline: the decision is
            # made here, at that moment, so a tab whose WebSocket is open is never dropped.
            if token.ident in namespace.token_to_sid:
                deadline = time.time() + self.token_expiration
                self._token_expires_at[token.cache_key] = (deadline, token)
                self._renewed = min(deadline, self._renewed or deadline)
                return
            super()._purge_token(token)
            _trim.soon()

        def _purge_expired_tokens(self) -> float | None:
            self._renewed = None
            deadline = super()._purge_expired_tokens()
            # Reflex's next deadline leaves out the ones renewed during its pass.
            return min((d for d in (deadline, self._renewed) if d is not None), default=None)

    # Reflex 0.9.2's StateManager declares get_state/set_state/modify_state as overloads over an
    # abstract method; StateManagerMemory overrides the implementation only, which mypy reports
    # as still abstract. The class is concrete: Reflex instantiates it the same way.
    app._state_manager = _ExpiringMemory(token_expiration=max(1, round(ttl)))  # type: ignore[abstract]


# gc.collect() walks every object: at most once per this many seconds, however many states go.
_TRIM_EVERY_S = 10.0


class _Trim:
    """Returns the memory of dropped states to the system, at most once per `_TRIM_EVERY_S`:
    a state tree holds references to its parent (cycles, freed only by the collector), and
    glibc keeps freed memory in the process unless asked to give it back."""

    def __init__(self) -> None:
        self._last = 0.0
        self._pending: asyncio.TimerHandle | None = None

    def soon(self) -> None:
        if self._pending is None:
            delay = max(0.0, self._last + _TRIM_EVERY_S - time.monotonic())
            self._pending = asyncio.get_running_loop().call_later(delay, self._run)

    def _run(self) -> None:
        self._pending = None
        self._last = time.monotonic()
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


_trim = _Trim()
