"""bench/reflex_client.py against a real `working serve`: sign up, add a note, read it back."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from services import REPO, Server, base_env, free_port, wait_until
from working.models import Account, Note
from working.runtime import db
from working.runtime.settings import load

sys.path.insert(0, str(REPO))
from bench.reflex_client import (
    ReflexClient,
    ReflexClientError,
    client_storage_vars,
    delta_for,
    full_name,
    logged_in,
    ticket_of,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def server(frontend_export: Path, database_env: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    env = {"PORT": str(port), "FRONTEND_DIR": str(frontend_export), **database_env}
    srv = Server(base_env(**env), port, cwd=tmp_path).start()
    srv.wait_healthy()
    yield srv, env
    srv.stop()


def test_full_name_maps_short_names_to_reflex_state_names() -> None:
    from working.working import AuthState, NotesState

    assert full_name("NotesState.add") == f"{NotesState.get_full_name()}.add"
    assert full_name("AuthState") == AuthState.get_full_name()
    assert full_name("NotesState.add").startswith("reflex___state____state.")
    # The session is an HttpOnly cookie set over HTTP, not a var the page's script writes.
    assert client_storage_vars() == frozenset()


def test_sign_up_and_add_a_note_reach_the_database(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    srv, env = server
    username = f"u{uuid.uuid4().hex[:10]}"
    body = f"benchmark note {uuid.uuid4()}"
    notes_state = full_name("NotesState")
    auth_state = full_name("AuthState")

    tokens: list[str] = []

    async def scenario() -> tuple[list[dict], list[dict], list[dict]]:
        async with ReflexClient(srv.url, client_storage=client_storage_vars()) as c:
            tokens.append(c.token)
            hydrate = await c.hydrate("/signup")
            form = {"username": username, "password": "correct horse"}
            signed = await c.event(full_name("AuthState.sign_up"), {"form": form}, until=logged_in)
            await c.hydrate("/notes")
            added = await c.event(full_name("NotesState.add"), {"form": {"body": body}})
            return hydrate, signed, added

    hydrate, signed, added = asyncio.run(scenario())

    assert delta_for(hydrate, "reflex___state____state")["is_hydrated"] is True
    assert delta_for(signed, auth_state)["username"] == username
    assert ticket_of(signed)
    notes = delta_for(added, notes_state)["notes"]
    assert [n["body"] for n in notes] == [body]
    # Without Redis the tabs' state stays in memory: Reflex's default would pickle it into
    # the working directory at every event.
    assert not (tmp_path / ".states").exists()
    # The tab's token opens its state; the log line of its WebSocket must not carry it.
    wait_until(lambda: "WebSocket /_event/" in srv.output, 5, "the WebSocket's log line", 0.05)
    assert "WebSocket /_event/?token=***" in srv.output
    assert tokens[0] not in srv.output

    engine = db.create(load(env))
    try:
        with Session(engine) as s:
            account = s.scalars(select(Account).where(Account.username == username)).one()
            stored = s.scalars(select(Note).where(Note.account_id == account.id)).all()
            assert [n.body for n in stored] == [body]
            assert notes[0]["id"] == str(stored[0].id)
    finally:
        engine.dispose()


def test_an_event_without_an_answer_times_out(server) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server

    async def scenario() -> None:
        async with ReflexClient(srv.url) as c:
            await c.hydrate("/")
            # Waiting for an update that never comes.
            await c.event(
                full_name("NotesState.set_draft"), {"value": "x"}, until=lambda _: False, timeout=1
            )

    with pytest.raises(ReflexClientError, match="timed out"):
        asyncio.run(scenario())


def test_a_foreign_origin_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server

    async def scenario() -> None:
        async with ReflexClient(srv.url, origin="http://evil.example", connect_timeout=3):
            pass

    with pytest.raises(ReflexClientError, match="cannot connect"):
        asyncio.run(scenario())
