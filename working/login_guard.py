"""What bounds the cost of log-ins and sign-ups in one process: a hashing pool of its own with
a bounded queue, and attempt rates per client address and overall.

scrypt costs tens of milliseconds of CPU and 16 MiB each. Run in the event loop's default
thread pool it made every database call and the health probe wait behind a flood of log-ins
for names that do not exist; here it has its own threads, and when they and the queue are
full an attempt is refused at once rather than queued without bound.

The limits are per process (each replica and worker enforces its own); the throttle per
(name, client) in auth.py is the one shared through the database.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from .runtime.settings import Settings

_T = TypeVar("_T")

# Client addresses remembered by the per-client rate limit; the oldest go first past it, so
# a flood from many addresses cannot grow the table without bound.
_MAX_CLIENTS = 10_000


class Refused(Exception):
    """Over a limit: the attempt was not made. `retry_after` in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.1f}s")
        self.retry_after = retry_after


def client_address(headers: Mapping[str, str]) -> str:
    """The client's address as uvicorn gives it: the peer, or the X-Forwarded-For entry that
    uvicorn's proxy-headers middleware accepted from a trusted proxy (the one place that trust
    is decided). Reflex copies it into each event's router headers as `asgi-scope-client`;
    Reflex's own `client_ip` takes any X-Forwarded-For at face value, so it is not used."""
    return headers.get("asgi-scope-client", "")[:64] or "unknown"


class _Bucket:
    """A token bucket: refills at `per_second`, holds at most `capacity` (the burst)."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, capacity: float, now: float) -> None:
        self.tokens = capacity
        self.stamp = now

    def wait(self, capacity: float, per_second: float, now: float) -> float:
        """0 if a token is there to take, else the seconds until one is."""
        self.tokens = min(capacity, self.tokens + (now - self.stamp) * per_second)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / per_second


class LoginGuard:
    """Used from the event loop only (no locks): the rate check and the pool's slot count."""

    def __init__(self, workers: int, queue: int, rate: int, rate_total: int) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="working-hash")
        self._slots = workers + queue
        self._busy = 0
        self._rate = float(rate)
        self._rate_total = float(rate_total)
        self._clients: OrderedDict[str, _Bucket] = OrderedDict()
        self._total = _Bucket(self._rate_total, time.monotonic())

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginGuard:
        return cls(
            settings.login_workers,
            settings.login_queue,
            settings.login_rate,
            settings.login_rate_total,
        )

    def check_rate(self, client: str) -> None:
        """Count one attempt from `client`; Refused when it or everyone is over the rate."""
        now = time.monotonic()
        bucket = self._clients.get(client)
        if bucket is None:
            bucket = self._clients[client] = _Bucket(self._rate, now)
            while len(self._clients) > _MAX_CLIENTS:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
        # Taken from both or from neither: while everyone together is over the rate, one
        # client's refused attempts must not use up its own allowance for afterwards.
        wait = max(
            bucket.wait(self._rate, self._rate / 60, now),
            self._total.wait(self._rate_total, self._rate_total / 60, now),
        )
        if wait:
            raise Refused(wait)
        bucket.tokens -= 1
        self._total.tokens -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Callable[..., asyncio.Future[_T]]]:
        """Reserve a place in the hashing pool (running or queued) for one attempt, before
        anything is counted against it; Refused at once when there is none. Yields `hash`,
        which runs a function on the pool."""
        if self._busy >= self._slots:
            raise Refused(1.0)  # the queue is full: "try again in 1 s" is a hint, not a promise
        self._busy += 1
        try:
            yield self._submit
        finally:
            self._busy -= 1

    def _submit(self, fn: Callable[..., _T], *args: object) -> asyncio.Future[_T]:
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
