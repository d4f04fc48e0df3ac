"""Accounts and notes against a real database (SQLite and PostgreSQL); sessions and the login
throttle: tests/test_auth_hostile.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from working import auth, notes
from working.models import Account
from working.runtime import db, migrations, settings


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


def test_notes_belong_to_their_owner(tx) -> None:  # type: ignore[no-untyped-def]
    alice = tx(auth.sign_up, "alice", "correct horse")
    bob = tx(auth.sign_up, "bob", "correct horse")
    first = tx(notes.add_note, alice.id, "first")
    tx(notes.add_note, alice.id, "second")
    assert [n.body for n in tx(notes.list_notes, alice.id)] == ["second", "first"]
    assert tx(notes.list_notes, bob.id) == []
    assert tx(notes.delete_note, bob.id, first.id) is False
    assert len(tx(notes.list_notes, alice.id)) == 2
    assert tx(notes.delete_note, alice.id, first.id) is True
    assert [n.body for n in tx(notes.list_notes, alice.id)] == ["second"]


def test_note_length_is_limited(tx) -> None:  # type: ignore[no-untyped-def]
    alice = tx(auth.sign_up, "alice", "correct horse")
    tx(notes.add_note, alice.id, "x" * notes.NOTE_MAX)
    with pytest.raises(notes.NoteError, match=f"at most {notes.NOTE_MAX} characters"):
        tx(notes.add_note, alice.id, "x" * (notes.NOTE_MAX + 1))
    with pytest.raises(notes.NoteError, match="cannot be empty"):
        tx(notes.add_note, alice.id, "   ")


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
    # What build_asgi does before it loads the app: Reflex's model module, which imports
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
    from datetime import UTC, datetime

    from working.models import Note

    alice = tx(auth.sign_up, "alice", "correct horse")
    bob = tx(auth.sign_up, "bob", "correct horse")
    now = datetime.now(UTC)
    # Alice at the cap, in one transaction (the cap itself is what is under test, not add_note).
    tx(
        lambda s: s.add_all(
            Note(account_id=alice.id, body=f"note {n}", created_at=now)
            for n in range(notes.NOTES_PER_ACCOUNT_MAX)
        )
    )
    with pytest.raises(notes.NoteError, match=f"You have {notes.NOTES_PER_ACCOUNT_MAX} notes"):
        tx(notes.add_note, alice.id, "one too many")
    # Her notes count against her limit only: Bob still adds his.
    assert tx(notes.add_note, bob.id, "bob's first").body == "bob's first"
    assert len(tx(notes.list_notes, alice.id)) == notes.NOTES_PER_ACCOUNT_MAX
    assert [n.body for n in tx(notes.list_notes, bob.id)] == ["bob's first"]
