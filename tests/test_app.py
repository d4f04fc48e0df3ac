"""Accounts and notes against a real database (SQLite and PostgreSQL); sessions and the login
throttle: tests/test_auth_hostile.py."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from working import auth, notes
from working.models import Account, Note
from working.runtime import db, migrations, settings

TTL = timedelta(hours=1)


def test_migrations_are_idempotent(engine: Engine) -> None:
    migrations.apply(engine)
    migrations.apply(engine)
    with Session(engine) as s:
        assert s.scalars(select(Account)).all() == []


def test_password_is_stored_as_an_scrypt_hash(tx) -> None:  # type: ignore[no-untyped-def]
    tx(auth.sign_up, "Alice", "correct horse")
    stored = tx(lambda s: s.scalars(select(Account)).one().password_hash)
    assert stored.startswith("scrypt$16384$8$1$")
    assert "correct horse" not in stored
    assert auth.verify_password("correct horse", stored)
    assert not auth.verify_password("correct horsE", stored)


def test_sign_up_rejects_taken_names_and_out_of_range_input(tx) -> None:  # type: ignore[no-untyped-def]
    tx(auth.sign_up, "alice", "correct horse")
    with pytest.raises(auth.AuthError, match="taken"):
        tx(auth.sign_up, "ALICE", "another password")
    with pytest.raises(auth.AuthError, match="3 to 32 characters"):
        tx(auth.sign_up, "x" * 33, "correct horse")
    with pytest.raises(auth.AuthError, match="8 to 128 characters"):
        tx(auth.sign_up, "bob", "short")
    with pytest.raises(auth.AuthError, match="letters, digits"):
        tx(auth.sign_up, "bob smith", "correct horse")


def _session(tx, username: str, ttl: timedelta = TTL) -> int:  # type: ignore[no-untyped-def]
    """A new account's login session, by id (what a logged-in tab holds)."""
    user = tx(auth.sign_up, username, "correct horse")
    return int(tx(auth.open_session, user.id, "10.0.0.1", ttl).session_id)


def _notes(tx, action, session_id: int, *args: str):  # type: ignore[no-untyped-def]
    """A notes action in its own transaction on a Core connection, as a notes event runs it."""
    return tx(lambda s: action(s.connection(), session_id, *args))


def _bodies(tx, session_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    listing = _notes(tx, notes.read, session_id)
    assert listing is not None
    return [n.body for n in listing.notes]


def test_notes_belong_to_their_owner(tx) -> None:  # type: ignore[no-untyped-def]
    alice, bob = _session(tx, "alice"), _session(tx, "bob")
    assert _notes(tx, notes.read, alice) == notes.Listing("alice", [])
    _notes(tx, notes.add, alice, "first")
    added = _notes(tx, notes.add, alice, "second")
    assert added.error == ""
    assert [n.body for n in added.notes] == ["second", "first"]
    assert _bodies(tx, bob) == []
    first = str(added.notes[1].id)
    gone = "That note does not exist."
    assert _notes(tx, notes.delete_note, bob, first) == notes.Listing("bob", [], gone)
    assert _bodies(tx, alice) == ["second", "first"]
    # Ids as a page could send them: none names a note, none is a database error.
    for hostile in ("-1", "1.0", "\u00b2", "9" * 30, ""):
        assert _notes(tx, notes.delete_note, alice, hostile).error == gone
    assert _notes(tx, notes.delete_note, alice, first).error == ""
    assert _bodies(tx, alice) == ["second"]


def test_a_dead_session_reads_and_writes_nothing(tx) -> None:  # type: ignore[no-untyped-def]
    alice = _session(tx, "alice")
    _notes(tx, notes.add, alice, "kept")
    note = str(_notes(tx, notes.read, alice).notes[0].id)
    expired = _session(tx, "bob", ttl=timedelta(seconds=-1))
    assert _notes(tx, notes.read, expired) is None
    assert _notes(tx, notes.add, expired, "too late") is None
    tx(auth.log_out, "", alice)
    assert _notes(tx, notes.read, alice) is None
    assert _notes(tx, notes.add, alice, "after log-out") is None
    assert _notes(tx, notes.delete_note, alice, note) is None
    assert tx(lambda s: s.scalars(select(Note.body)).all()) == ["kept"]


def test_note_length_is_limited(tx) -> None:  # type: ignore[no-untyped-def]
    alice = _session(tx, "alice")
    assert _notes(tx, notes.add, alice, "x" * notes.NOTE_MAX).error == ""
    too_long = _notes(tx, notes.add, alice, "x" * (notes.NOTE_MAX + 1)).error
    assert f"at most {notes.NOTE_MAX} characters" in too_long
    assert "cannot be empty" in _notes(tx, notes.add, alice, "   ").error
    assert len(_bodies(tx, alice)) == 1


def test_the_head_read_from_the_scripts_is_alembics() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations.MIGRATIONS))
    assert migrations._head_revision() == ScriptDirectory.from_config(config).get_current_head()


def test_a_database_at_head_is_checked_without_alembic(engine: Engine) -> None:
    migrations.apply(engine)
    # A fresh process, as at every start: at head, the check must not need Alembic.
    script = (
        "import sys; from sqlalchemy import create_engine; "
        "from working.runtime import migrations; "
        f"migrations.apply(create_engine({engine.url.render_as_string(hide_password=False)!r})); "
        "print('alembic' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False", out.stderr


def test_the_serving_process_shares_its_engine_with_reflex_without_alembic(
    tmp_path: Path,
) -> None:
    # What server.build does before it loads the app: Reflex's model module, which imports
    # Alembic when it is installed, comes without it; rx.session() still uses the runtime's
    # engine, and Reflex's own migration helpers name the runtime's commands.
    script = (
        "import sys; from working.runtime import db, reflex_config, settings\n"
        "s = settings.from_environ(); reflex_config.load(); db.share_with_reflex(s)\n"
        "import reflex as rx, reflex.state\n"
        "from reflex import model\n"
        "print(any(m.split('.')[0] in ('alembic', 'mako') for m in sys.modules), "
        "model._ENGINE[s.database_url] is db.engine())\n"
        "with rx.session() as session: print(session.get_bind() is db.engine())\n"
        "try: rx.Model.migrate()\n"
        "except Exception as exc: print(type(exc).__name__, exc)\n"
    )
    # PYTHONPATH too: tests/mutate.py points it at a mutated copy of the package.
    env = {k: os.environ[k] for k in ("PATH", "PYTHONPATH") if k in os.environ}
    env |= {"DATA_DIR": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    lines = out.stdout.splitlines()
    assert lines[:2] == ["False True", "True"], out.stderr
    assert lines[-1].startswith("MigrationError Reflex's migration helpers do not run"), lines


@pytest.mark.postgres
def test_a_pooled_connection_the_database_dropped_is_replaced_on_checkout(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng = db.create(settings.load({"DATABASE_URL": pg_url, "DATA_DIR": str(tmp_path)}))
    pings = []
    original_ping = eng.dialect.do_ping

    def counted_ping(connection):  # type: ignore[no-untyped-def]
        pings.append(connection)
        return original_ping(connection)

    monkeypatch.setattr(eng.dialect, "do_ping", counted_ping)
    backend = "SELECT pg_backend_pid()"
    try:
        with eng.connect() as conn:
            first = conn.execute(text(backend)).scalar()
        # Used a moment ago: no ping, the same connection (one round trip fewer per event).
        with eng.connect() as conn:
            assert conn.execute(text(backend)).scalar() == first
        assert pings == []
        # Closed by the database meanwhile (a restart, a failover), and idle long enough to be
        # doubted: the checkout pings it, drops it, and hands out a new one; no error.
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [first])
        monkeypatch.setattr(db, "_PING_AFTER_IDLE_S", 0.0)
        with eng.connect() as conn:
            assert conn.execute(text(backend)).scalar() != first
        assert pings
    finally:
        eng.dispose()


def test_note_cap_is_per_account(tx) -> None:  # type: ignore[no-untyped-def]
    alice, bob = _session(tx, "alice"), _session(tx, "bob")
    alice_id = tx(lambda s: s.scalar(select(Account.id).where(Account.username == "alice")))
    now = datetime.now(UTC)
    # Alice at the cap, in one transaction (the cap itself is what is under test, not add).
    tx(
        lambda s: s.add_all(
            Note(account_id=alice_id, body=f"note {n}", created_at=now)
            for n in range(notes.NOTES_PER_ACCOUNT_MAX)
        )
    )
    refused = _notes(tx, notes.add, alice, "one too many")
    assert refused.error == (
        f"You have {notes.NOTES_PER_ACCOUNT_MAX} notes, the most one account can keep."
    )
    assert len(refused.notes) == notes.NOTES_PER_ACCOUNT_MAX
    # Her notes count against her limit only: Bob still adds his.
    assert _notes(tx, notes.add, bob, "bob's first").error == ""
    assert _bodies(tx, bob) == ["bob's first"]
    assert len(_bodies(tx, alice)) == notes.NOTES_PER_ACCOUNT_MAX
