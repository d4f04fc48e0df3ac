"""Periodic database housekeeping, started with the app (a Reflex lifespan task): expired login
sessions and long-quiet login throttle rows are deleted at start and then every few minutes,
so neither table grows with logins that nobody will use again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from . import auth
from .runtime import db

log = logging.getLogger("working.housekeeping")

PURGE_EVERY_S = 600.0


async def _purge_forever(every: float) -> None:
    while True:
        try:
            purged = await db.run(auth.purge)
        except Exception as exc:  # a database outage: try again at the next round
            log.warning("purging expired sessions failed: %s", type(exc).__name__)
        else:
            if purged.sessions or purged.throttles:
                log.info(
                    "purged %d expired session(s), %d login throttle row(s)",
                    purged.sessions,
                    purged.throttles,
                )
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def purge_periodically() -> AsyncIterator[None]:
    task = asyncio.create_task(_purge_forever(PURGE_EVERY_S), name="working-purge-sessions")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
