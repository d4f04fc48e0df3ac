"""/health and /livez, evaluated at request time.

Two questions, two endpoints. /livez: can this container serve? It answers from the event loop
every browser shares, without touching a dependency, so an answer in time means the process is
up and its loop responsive; it turns 503 once the process drains. The container healthcheck
(`working healthcheck`) asks it: a database outage must not make Traefik drop the only
container, or every page, /status included, would answer 404 instead of saying what is wrong.
/health: are the dependencies up? For monitors and /status; 503 when degraded or draining.

Each dependency probe runs with a short timeout, and concurrent requests share one probe in
flight, so a hung database can neither hang the health check nor pile up threads behind it.
The body carries states and latencies only: no exception text, host names or credentials.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import db
from .contract import contract
from .masking import describe
from .settings import Settings

log = logging.getLogger("working.health")

PROBE_TIMEOUT_S = 2.0


class _Probe:
    """One dependency check: at most one in flight; callers arriving meanwhile share it."""

    def __init__(self, name: str, check: Callable[[], Awaitable[float]]) -> None:
        self.name = name
        self._check = check
        self._inflight: asyncio.Task[float] | None = None
        self._last_ok: bool | None = None

    async def run(self) -> dict[str, Any]:
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._check())
        try:
            latency = await asyncio.wait_for(asyncio.shield(self._inflight), PROBE_TIMEOUT_S)
        except Exception as exc:
            self._report(False, exc)
            return {"status": "disconnected"}
        self._report(True, None)
        return {"status": "connected", "latency_ms": round(latency, 2)}

    def _report(self, ok: bool, exc: BaseException | None) -> None:
        # Log transitions only: a probe every 10 s must not flood the log.
        if ok != self._last_ok:
            if ok:
                log.info("%s: connected", self.name)
            else:
                reason = "timed out" if isinstance(exc, TimeoutError) else describe(exc)  # type: ignore[arg-type]
                log.warning("%s: unreachable (%s)", self.name, reason)
        self._last_ok = ok


class Health:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = time.monotonic()
        self.draining = False
        self._database = _Probe("database", self._ping_database)
        self._redis = _Probe("redis", self._ping_redis) if settings.redis_url else None
        self._redis_client: Any = None

    async def report(self) -> tuple[int, dict[str, Any]]:
        checks = [self._database.run()]
        if self._redis is not None:
            checks.append(self._redis.run())
        results = await asyncio.gather(*checks)
        dependencies_ok = all(r["status"] == "connected" for r in results)
        status = "draining" if self.draining else "healthy" if dependencies_ok else "degraded"
        body: dict[str, Any] = {
            "status": status,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "service": contract()["service"],
            "environment": self.settings.environment,
            "database": {"backend": self.settings.database_backend, **results[0]},
        }
        if self._redis is not None:
            body["redis"] = results[1]
        body |= {
            "git_commit": self.settings.git_commit,
            "version": self.settings.app_version,
            "uptime_s": round(time.monotonic() - self.started, 1),
        }
        return (200 if status == "healthy" else 503), body

    async def _ping_database(self) -> float:
        return await asyncio.to_thread(db.ping, db.engine())

    async def _ping_redis(self) -> float:
        import redis.asyncio as redis

        if self._redis_client is None:
            self._redis_client = redis.Redis.from_url(
                self.settings.redis_url,  # type: ignore[arg-type]
                socket_connect_timeout=PROBE_TIMEOUT_S,
                socket_timeout=PROBE_TIMEOUT_S,
            )
        started = time.perf_counter()
        await self._redis_client.ping()
        return (time.perf_counter() - started) * 1000

    async def endpoint(self, request: Request) -> Response:
        code, body = await self.report()
        return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})

    async def livez(self, request: Request) -> Response:
        if self.draining:
            return JSONResponse(
                {"status": "draining"}, status_code=503, headers={"Cache-Control": "no-store"}
            )
        return JSONResponse({"status": "alive"}, headers={"Cache-Control": "no-store"})


_current: Health | None = None


def install(settings: Settings) -> Health:
    global _current
    _current = Health(settings)
    return _current


def current() -> Health | None:
    """The serving process's health monitor (None outside `working serve`)."""
    return _current
