"""Redis, Reflex's shared state store when REDIS_URL is set: the bounded wait for it at start.

(Failover of browser sessions between replicas is in failover.py; the /health probe in health.py.)
"""

from __future__ import annotations

import logging
import time

from .errors import DependencyError
from .masking import mask_text

log = logging.getLogger("working.redis")

_CONNECT_TIMEOUT_S = 3


def describe(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return mask_text(first)


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
    """Retry with backoff until Redis answers or `timeout` seconds have passed (exit code 3)."""
    deadline = time.monotonic() + timeout
    delay = 0.25
    attempt = 0
    while True:
        attempt += 1
        try:
            ping(url)
        except Exception as exc:
            remaining = deadline - time.monotonic()
            reason = describe(exc)
            if remaining <= 0:
                raise DependencyError(
                    f"redis not reachable after {timeout:g}s ({attempt} attempts): {reason}; "
                    "check REDIS_URL and that Redis accepts connections, "
                    "or raise DB_WAIT_TIMEOUT"
                ) from None
            log.warning("redis not reachable (attempt %d): %s; retrying", attempt, reason)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)
        else:
            if attempt > 1:
                log.info("redis reachable after %d attempts", attempt)
            return
