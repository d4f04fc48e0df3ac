"""The app's migrations: applied at start under a lock, and new revisions written for it.

The Alembic history is the app's (working/migrations/, named by the seam in app.py): its env.py
only calls `run_env` with the app's metadata. This module is the runner, the same for any app.
"""

from __future__ import annotations

import ast
import fcntl
import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from .app import MIGRATIONS
from .errors import MigrationError, WorkingError
from .masking import describe

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import MetaData

log = logging.getLogger("working.migrations")

# Any constant works as long as every replica uses the same one.
_MIGRATION_LOCK_KEY = 0x776F726B  # "work"


def run_env(metadata: MetaData) -> None:
    """The whole of the app's migrations/env.py: migrate on the connection handed over."""
    from alembic import context

    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # A failed revision rolls back alone; earlier complete revisions stay applied.
        transaction_per_migration=True,
        render_as_batch=connection.dialect.name == "sqlite",
        process_revision_directives=_nothing_if_unchanged,
        render_item=_import_sqlmodel_types,
    )
    with context.begin_transaction():
        context.run_migrations()


def _import_sqlmodel_types(type_: str, obj: Any, autogen_context: Any) -> Literal[False]:
    # An rx.Model's str column is sqlmodel's AutoString, rendered as sqlmodel.sql.sqltypes...:
    # the revision must import sqlmodel, as Reflex's own autogenerate makes it do.
    if type_ == "type" and type(obj).__module__.startswith("sqlmodel"):
        autogen_context.imports.add("import sqlmodel")
    return False  # Alembic renders the item itself


def _nothing_if_unchanged(context: Any, revision: Any, directives: list[Any]) -> None:
    # Autogenerate that finds the models and the history agreeing writes no empty revision.
    if directives and directives[0].upgrade_ops.is_empty():
        directives[:] = []


def ships_migrations() -> bool:
    return MIGRATIONS.joinpath("env.py").is_file()


def apply(eng: Engine) -> None:
    """Bring the schema to the newest revision. Idempotent; replicas take turns (PostgreSQL's
    advisory lock, or a lock file beside a SQLite database they share)."""
    if not ships_migrations():
        _refuse_unadopted()
        log.info("migrations: the app ships none (no working/migrations/env.py)")
        return
    # Most starts find the schema at head: then Alembic (a tenth of the cold start to import
    # and to load its scripts) is not needed to say so.
    head = _head_revision()
    if head is not None and _stored_revisions(eng) == {head}:
        log.info("migrations: database already at %s", head)
        return
    from alembic import command

    from . import reflex_config

    # The app's env.py may import its module, which makes an rx.App and reads rxconfig.py.
    reflex_config.load()
    config = _config()
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


def sqlite_lock_path(database: str) -> Path:
    """The lock file beside a SQLite database that replicas sharing it migrate under."""
    return Path(database + ".migration-lock")


@contextmanager
def _migration_lock(conn) -> Iterator[None]:  # type: ignore[no-untyped-def]
    database = conn.engine.url.database
    if conn.dialect.name == "sqlite" and database and database != ":memory:":
        # Replicas on one volume share the file: the first migrates, the others wait here.
        with sqlite_lock_path(database).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield  # closing the file releases the lock, also if this process dies
        return
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
    for script in _versions():
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


def new_revision(message: str) -> Path:
    """Write the revision that brings a database at head to the app's models (autogenerate).

    The models are compared with a scratch SQLite database at head, never a real one; the
    file is for the developer to read, adjust and commit.
    """
    from alembic import command

    if not ships_migrations():
        _refuse_unadopted()
        raise WorkingError(
            f"no {MIGRATIONS}/env.py: the app ships no migrations; see docs/your-app.md"
        )
    if not message.strip():
        raise WorkingError('give the revision a message: new-migration -m "add greetings"')
    before = {script.name for script in _versions()}
    with tempfile.TemporaryDirectory(prefix="working-migration-") as tmp:
        scratch = create_engine(f"sqlite:///{Path(tmp) / 'scratch.db'}")
        config = _config()
        try:
            with scratch.connect() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                command.revision(
                    config, message=message, autogenerate=True, rev_id=_next_revision_id()
                )
        finally:
            scratch.dispose()
    written = sorted({script.name for script in _versions()} - before)
    if not written:
        raise WorkingError(
            "the models and the migrations already agree: no revision written "
            "(change a model in the app first)"
        )
    return Path(str(MIGRATIONS / "versions" / written[0]))


def _refuse_unadopted() -> None:
    from .adopt import refuse_unadopted
    from .reflex_config import rxconfig_path

    refuse_unadopted(rxconfig_path().parent, Path(str(MIGRATIONS)))


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _versions() -> list[Traversable]:
    versions = MIGRATIONS / "versions"
    if not versions.is_dir():
        return []
    return [script for script in versions.iterdir() if script.name.endswith(".py")]


def _next_revision_id() -> str | None:
    """The next of numbered revisions (0001, 0002, ...); None (Alembic's random id) otherwise."""
    ids = [_assignments(s.read_text(), ("revision",)).get("revision") for s in _versions()]
    if not ids:
        return "0001"
    numbers = [i for i in ids if isinstance(i, str) and re.fullmatch(r"\d+", i)]
    if len(numbers) != len(ids):
        return None
    width = max(len(i) for i in numbers)
    return str(max(int(i) for i in numbers) + 1).zfill(width)
