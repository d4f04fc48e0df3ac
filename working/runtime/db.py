"""The database: one engine per process, a bounded wait for it, and `run` for the app's calls.

Migrations are migrations.py's."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, InvalidatePoolError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from .errors import MigrationError
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


async def run_sql(fn: Callable[..., _T], *args: Any) -> _T:
    """`fn(connection, *args)` in one committed transaction, in a worker thread, like `run`,
    on a Core connection: for statements built once, without the ORM's work on each."""

    def in_transaction() -> _T:
        with engine().begin() as c:
            return fn(c, *args)

    return await asyncio.to_thread(in_transaction)


def share_with_reflex(settings: Settings) -> None:
    """`rx.session()` and `rx.Model` queries use the runtime's engine: one pool per process,
    disposed at shutdown, and the same connect timeout and SQLite pragmas.

    Reflex 0.9.2 keeps one engine per URL in `reflex.model._ENGINE` and makes it on first use
    (`get_engine`), warning "Database is not initialized, run reflex db init" when no
    alembic.ini is in the working directory: here the runtime migrates, so that never applies.
    """
    model = _reflex_model()
    model._ENGINE[settings.database_url] = configure(settings)


# Reflex's migration helpers (what `reflex db` runs; a server never does): here the runtime
# migrates, so they name its commands instead.
_REFLEX_MIGRATION_HELPERS = (
    "alembic_init",
    "get_migration_history",
    "alembic_autogenerate",
    "migrate",
)


def _reflex_model() -> Any:
    """`reflex.model` without Alembic, when the start has not needed Alembic already.

    Reflex 0.9.2's model module imports Alembic (and through it Mako and Pygments) whenever it
    is installed, for its `reflex db` helpers: a tenth of the start and several MiB that a
    server at head never uses. `importlib.util.find_spec`, which that module asks, answers None
    for a name whose sys.modules entry is None."""
    if "reflex.model" in sys.modules or "alembic" in sys.modules:
        from reflex import model

        return model
    sys.modules["alembic"] = None  # type: ignore[assignment]
    try:
        from reflex import model
    finally:
        del sys.modules["alembic"]
    for name in _REFLEX_MIGRATION_HELPERS:
        setattr(model, name, _runtime_migrates)
    return model


def _runtime_migrates(*args: Any, **kwargs: Any) -> None:
    raise MigrationError(
        "Reflex's migration helpers do not run in the server: it applies working/migrations "
        "at start; write a revision with `working new-migration -m ...`"
    )


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
    eng = create_engine(
        settings.database_url,
        pool_size=5,
        max_overflow=10,
        pool_timeout=5,
        connect_args={"connect_timeout": _CONNECT_TIMEOUT_S, "application_name": "working"},
    )
    event.listen(eng, "checkin", _note_checkin)
    event.listen(
        eng, "checkout", lambda connection, record, _: _ping_if_idle(eng, connection, record)
    )
    return eng


# A pooled connection idle this long is pinged before use (a restarted or failed-over database
# closed it meanwhile); one used more recently is not. SQLAlchemy's pool_pre_ping pinged on every
# checkout: one round trip in six of a note event, however busy the pool.
_PING_AFTER_IDLE_S = 1.0


def _note_checkin(dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(eng: Engine, dbapi_connection: Any, record: Any) -> None:
    checked_in = record.info.get("checked_in")
    if checked_in is None or time.monotonic() - checked_in < _PING_AFTER_IDLE_S:
        return  # just connected, or in use a moment ago
    dialect = eng.dialect
    try:
        dialect.do_ping(dbapi_connection)
    except dialect.loaded_dbapi.Error as exc:
        if dialect.is_disconnect(exc, dbapi_connection, None):
            # What pool_pre_ping does: the pool drops every connection made before now and
            # retries this checkout with a new one.
            raise InvalidatePoolError(str(exc)) from exc
        raise


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
