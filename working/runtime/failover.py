"""Failover of browser sessions between replicas that share Reflex's Redis state manager.

Reflex 0.9.2 records, per browser tab (token), which app instance holds its WebSocket, and
treats a second connection for a token that has a record as a duplicated tab: it hands that
connection a fresh token, which is a fresh, empty state. When a replica dies (SIGKILL, OOM,
node loss) its records stay in Redis, so every browser reconnecting elsewhere would lose its
state. `FailoverTokenManager` tells the two cases apart: each instance holds a Redis
subscription for as long as it serves (Redis drops it the moment the process's connection
closes), and a record whose instance no longer holds one is taken over instead of duplicated.
A draining replica gives its subscription up first (`retire`), so its browsers keep their
state on the replica they reconnect to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
from collections.abc import AsyncIterator
from typing import Any

from reflex.utils.token_manager import RedisTokenManager, SocketRecord

from .masking import describe

log = logging.getLogger("working.redis")

_ALIVE_CHANNEL = "working:instance-alive:"
# Delete a socket record only while it is still the one this instance wrote: after another
# replica took the token over, the late disconnect of the old socket must not drop its record.
_DELETE_IF_OURS = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def install(app: Any) -> FailoverTokenManager:
    """Replace the app's token manager (Reflex's RedisTokenManager) before it serves."""
    from reflex.utils import prerequisites

    manager = FailoverTokenManager(prerequisites.get_redis(), app)
    app.event_namespace._token_manager = manager
    app.register_lifespan_task(manager.lifespan)
    return manager


class FailoverTokenManager(RedisTokenManager):
    """Reflex's RedisTokenManager, taking over the tokens of instances that are gone."""

    def __init__(self, redis: Any, app: Any) -> None:
        super().__init__(redis)
        self._app = app
        self._alive_task: asyncio.Task[None] | None = None
        self._delete_if_ours = redis.register_script(_DELETE_IF_OURS)

    # -- liveness -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        self._alive_task = asyncio.create_task(self._stay_alive(), name="working-alive")
        try:
            yield
        finally:
            await self.retire()

    async def retire(self) -> None:
        """Stop announcing this instance: its tokens may now be taken over elsewhere."""
        task, self._alive_task = self._alive_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _stay_alive(self) -> None:
        channel = _ALIVE_CHANNEL + self.instance_id
        lost = False
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    if lost:
                        log.info("redis: connected again; session failover restored")
                        lost = False
                    await self._restore_keyspace_notifications()
                    async for _ in pubsub.listen():
                        pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not lost:
                    log.warning("redis: subscription lost (%s); retrying", describe(exc))
                    lost = True
            await asyncio.sleep(1)

    async def _restore_keyspace_notifications(self) -> None:
        # Reflex turns keyspace notifications on once per process; a Redis that restarted
        # without persistence forgot them, and lock waiters would then only wake on timeouts.
        manager = getattr(self._app, "_state_manager", None)
        if manager is None or not hasattr(manager, "_redis_notify_keyspace_events_enabled"):
            return
        manager._redis_notify_keyspace_events_enabled = False
        with contextlib.suppress(Exception):
            await manager._enable_keyspace_notifications()

    async def _alive(self, instance_id: str) -> bool:
        counts = await self.redis.pubsub_numsub(_ALIVE_CHANNEL + instance_id)
        return bool(counts and counts[0][1])

    # -- token records ----------------------------------------------------------------------

    async def link_token_to_sid(self, token: str, sid: str) -> str | None:
        local = self.token_to_socket.get(token)
        if local is not None and local.sid == sid:
            return None
        try:
            raw = await self.redis.get(self._get_redis_key(token))
            owner = pickle.loads(raw).instance_id if raw else None  # noqa: S301 (Reflex's record)
            orphaned = (
                owner is not None and owner != self.instance_id and not await self._alive(owner)
            )
        except Exception:
            orphaned = False
        if not orphaned:
            # No record (a new tab, or a clean handover), or a live owner (a duplicated tab).
            return await super().link_token_to_sid(token, sid)
        self._ensure_socket_record_task()
        record = SocketRecord(instance_id=self.instance_id, sid=sid)
        self.token_to_socket[token] = record
        self.sid_to_token[sid] = token
        try:
            await self.redis.set(
                self._get_redis_key(token), pickle.dumps(record), ex=self.token_expiration
            )
        except Exception as exc:
            log.warning("redis: could not record a taken-over session (%s)", describe(exc))
        log.info("session taken over from a stopped instance")
        return None

    async def disconnect_token(self, token: str, sid: str) -> None:
        record = self.token_to_socket.get(token)
        if record is None or record.sid != sid or record.instance_id != self.instance_id:
            return
        with contextlib.suppress(Exception):
            await self._delete_if_ours(
                keys=[self._get_redis_key(token)], args=[pickle.dumps(record)]
            )
        self.token_to_socket.pop(token, None)
        self.sid_to_token.pop(sid, None)
