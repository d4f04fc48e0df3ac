"""Redis, Reflex's shared state store when REDIS_URL is set: the bounded wait for it at start.

(Failover of browser sessions between replicas is in failover.py; the /health probe in health.py.)
"""

from __future__ import annotations

import time

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
