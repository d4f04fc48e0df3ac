"""The database: one engine per process, a bounded wait for it, and `run` for the app's calls.

Migrations are migrations.py's."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from .settings import Settings, from_environ
from .waiting import wait_until_reachable

log = logging.getLogger("working.db")
_T = TypeVar("_T")

_CONNECT_TIMEOUT_S = 3

_engine: Engine | None = None
_sessions: sessionmaker[Session] | None = None


def configure(settings: Settings) -> Engine:
    """Create the process's engine (once); later calls return the same one."""
    global _engine, _sessions
    if _engine is None:
        _engine = create(settings)
        _sessions = sessionmaker(_engine, expire_on_commit=False)
    return _engine


def engine() -> Engine:
    return _engine if _engine is not None else configure(from_environ())


@contextmanager
def session() -> Iterator[Session]:
    """A session in a transaction: committed when the block ends, rolled back on error."""
    engine()
    assert _sessions is not None
    with _sessions.begin() as s:
        yield s


async def run(fn: Callable[..., _T], *args: Any) -> _T:
    """`fn(session, *args)` in one committed transaction, in a worker thread: a blocking
    database call must not stall the event loop every connected browser shares."""

    def in_session() -> _T:
        with session() as s:
            return fn(s, *args)

    return await asyncio.to_thread(in_session)


def share_with_reflex(settings: Settings) -> None:
    """`rx.session()` and `rx.Model` queries use the runtime's engine: one pool per process,
    disposed at shutdown, and the same connect timeout and SQLite pragmas.

    Reflex 0.9.2 keeps one engine per URL in `reflex.model._ENGINE` and makes it on first use
    (`get_engine`), warning "Database is not initialized, run reflex db init" when no
    alembic.ini is in the working directory: here the runtime migrates, so that never applies.
    """
    from reflex import model

    model._ENGINE[settings.database_url] = configure(settings)


def dispose() -> None:
    global _engine, _sessions
    if _engine is not None:
        _engine.dispose()
    _engine = _sessions = None


def create(settings: Settings) -> Engine:
    if settings.database_backend == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        eng = create_engine(
            settings.database_url,
            connect_args={"check_same_thread": False, "timeout": 5},
        )
        event.listen(eng, "connect", _sqlite_pragmas)
        return eng
    return create_engine(
        settings.database_url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=5,
        connect_args={"connect_timeout": _CONNECT_TIMEOUT_S, "application_name": "working"},
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the health probe read while a request writes; foreign keys enforce ownership.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def ping(eng: Engine) -> float:
    """Round-trip a trivial query; returns the latency in milliseconds."""
    started = time.perf_counter()
    with eng.connect() as conn:
        conn.execute(text("SELECT 1"))
    return (time.perf_counter() - started) * 1000


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached (down, restarting, pool exhausted),
    as opposed to a bug: the user is told the database is down, not "something went wrong"."""
    return isinstance(exc, OperationalError | PoolTimeout) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def wait_for_db(eng: Engine, timeout: float) -> None:
    wait_until_reachable(
        "database",
        lambda: ping(eng),
        timeout,
        "check DATABASE_URL and that the database accepts connections, or raise DB_WAIT_TIMEOUT",
    )
