"""The database: one engine per process, a bounded wait for it, and migrations under a lock."""

from __future__ import annotations

import ast
import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from .errors import MigrationError, WorkingError
from .masking import describe
from .settings import Settings, from_environ
from .waiting import wait_until_reachable

log = logging.getLogger("working.db")
_T = TypeVar("_T")

# Any constant works as long as every replica uses the same one.
_MIGRATION_LOCK_KEY = 0x776F726B  # "work"
_CONNECT_TIMEOUT_S = 3
_MIGRATIONS = resources.files(__package__) / "migrations"

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


def migrate(eng: Engine) -> None:
    """Bring the schema to the newest revision. Idempotent; replicas take turns on PostgreSQL."""
    # Most starts find the schema at head: then Alembic (a tenth of the cold start to import
    # and to load its scripts) is not needed to say so.
    head = _head_revision()
    if head is not None and _stored_revisions(eng) == {head}:
        log.info("migrations: database already at %s", head)
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with eng.connect() as conn, _migration_lock(conn):
            before = _current_revision(conn)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            after = _current_revision(conn)
    except WorkingError:
        raise
    except Exception as exc:
        raise MigrationError(
            f"migration failed: {describe(exc)}; the schema was not changed "
            "past the last complete revision"
        ) from None
    if before == after:
        log.info("migrations: database already at %s", after)
    else:
        log.info("migrations: applied %s -> %s", before or "empty", after)


@contextmanager
def _migration_lock(conn) -> Iterator[None]:  # type: ignore[no-untyped-def]
    if conn.dialect.name != "postgresql":
        yield
        return
    # A session-level advisory lock: the first replica migrates, the others wait, then find
    # the schema at head and apply nothing.
    conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    conn.commit()
    try:
        yield
    finally:
        conn.rollback()
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        conn.commit()


def _current_revision(conn) -> str | None:  # type: ignore[no-untyped-def]
    from alembic.runtime.migration import MigrationContext

    revision = MigrationContext.configure(conn).get_current_revision()
    conn.commit()
    return revision


def _head_revision() -> str | None:
    """The newest revision in migrations/versions, read without importing the scripts; None
    unless the revisions form one line (then Alembic decides)."""
    revisions: dict[str, object] = {}  # revision -> down_revision (None, a str or a tuple)
    for script in (_MIGRATIONS / "versions").iterdir():
        if not script.name.endswith(".py"):
            continue
        found = _assignments(script.read_text(), ("revision", "down_revision"))
        revision = found.get("revision")
        if not isinstance(revision, str):
            return None
        revisions[revision] = found.get("down_revision")
    heads = set(revisions) - set(revisions.values())
    return heads.pop() if len(heads) == 1 else None


def _assignments(source: str, names: tuple[str, ...]) -> dict[str, object]:
    found: dict[str, object] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in names:
                with suppress(ValueError):
                    found[target.id] = ast.literal_eval(node.value)
    return found


def _stored_revisions(eng: Engine) -> set[str]:
    """What alembic_version holds; empty if the table does not exist yet."""
    with eng.connect() as conn:
        try:
            return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        except DBAPIError:
            return set()
