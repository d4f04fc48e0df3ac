"""A redeploy tells every tab what happened to its last event.

Thirty signed-in tabs (real Socket.IO clients speaking Reflex's protocol) add notes back to
back against a real PostgreSQL; the server gets SIGTERM meanwhile. Afterwards the database and
the tabs agree: every stored note was acknowledged to its tab (no write that succeeded shows
as lost, so no retry writes it twice) and every acknowledged note is stored.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest
from margins import within
from sqlalchemy import select
from sqlalchemy.orm import Session

from services import REPO, Server, base_env, free_port
from working.models import Account, Note
from working.runtime import db
from working.runtime.draining import TURNED_AWAY
from working.runtime.settings import load

sys.path.insert(0, str(REPO))
from bench.reflex_client import (
    ReflexClient,
    ReflexClientError,
    client_storage_vars,
    delta_for,
    full_name,
    logged_in,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TABS = 30
ACKNOWLEDGED_BEFORE_SIGTERM = TABS * 3


class Tab:
    def __init__(self, url: str, username: str) -> None:
        self.client = ReflexClient(url, client_storage=client_storage_vars())
        self.username = username
        self.acknowledged: set[str] = set()
        self.sent: list[str] = []
        self.turned_away = 0
        self.ended = ""

    async def sign_up(self) -> None:
        await self.client.connect()
        await self.client.hydrate("/signup", timeout=60)
        form = {"username": self.username, "password": "correct horse"}
        await self.client.event(
            full_name("AuthState.sign_up"), {"form": form}, until=logged_in, timeout=60
        )
        await self.client.hydrate("/notes", timeout=60)

    async def add_notes_until_the_socket_closes(self) -> None:
        notes = full_name("NotesState")
        try:
            for n in range(10_000):
                body = f"{self.username} note {n}"
                self.sent.append(body)

                def stored(updates: list[dict], body: str = body) -> bool:
                    listed = delta_for(updates, notes).get("notes") or []
                    return any(note["body"] == body for note in listed)

                def answered(updates: list[dict], body: str = body) -> bool:
                    return stored(updates) or TURNED_AWAY in str(updates)

                updates = await self.client.event(
                    full_name("NotesState.add"),
                    {"form": {"body": body}},
                    until=answered,
                    timeout=30,  # generous: the machine may be loaded
                )
                if not stored(updates):
                    self.turned_away += 1
                    break
                self.acknowledged.add(body)
        except ReflexClientError as exc:
            self.ended = str(exc)
        finally:
            await self.client.close()


def test_every_stored_note_was_acknowledged_and_every_acknowledged_note_is_stored(
    frontend_export: Path, pg_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "PORT": str(port),
        "FRONTEND_DIR": str(frontend_export),
        "DATABASE_URL": pg_url,
        "SHUTDOWN_TIMEOUT": "20",
        # All 30 tabs sign up from this one address, past the per-client rate (LOGIN_RATE).
        "LOGIN_RATE": "1000",
    }
    server = Server(base_env(**env), port, cwd=tmp_path).start()
    prefix = f"d{uuid.uuid4().hex[:6]}"
    tabs = [Tab(server.url, f"{prefix}t{i:02d}") for i in range(TABS)]

    async def scenario() -> float:
        for start in range(0, TABS, 10):  # sign-ups hash passwords: ten at a time
            await asyncio.gather(*(tab.sign_up() for tab in tabs[start : start + 10]))
        load = [asyncio.create_task(tab.add_notes_until_the_socket_closes()) for tab in tabs]
        # SIGTERM in the middle of a steady load (a number of notes, not a time: the machine
        # may be slow), with every tab's next note in flight.
        deadline = time.monotonic() + 60
        while sum(len(t.acknowledged) for t in tabs) < ACKNOWLEDGED_BEFORE_SIGTERM:
            assert time.monotonic() < deadline, "the load never got going"
            await asyncio.sleep(0.05)
        server.signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*load), timeout=60)
        return signalled

    try:
        server.wait_healthy()
        signalled = asyncio.run(scenario())
        code = server.wait(timeout=30)
        took = time.monotonic() - signalled
    finally:
        server.stop()

    assert code == 0, server.output
    assert took < 20 + within(1), "the drain outlived SHUTDOWN_TIMEOUT"
    stored = _stored_notes(env, prefix)
    acknowledged = {body for tab in tabs for body in tab.acknowledged}
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_SIGTERM
    assert stored - acknowledged == set(), "stored but never acknowledged to its tab"
    assert acknowledged - stored == set(), "acknowledged but not stored"
    # Every tab was cut by the restart, none by a timeout: each one's last event was
    # answered (stored and acknowledged, or turned away), then its socket closed.
    for tab in tabs:
        assert "timed out" not in tab.ended, (tab.username, tab.ended)
        last = tab.sent[-1]
        assert last in tab.acknowledged or tab.turned_away or last not in stored, tab.username
    # Tabs send back to back, so the ones whose event finished during the drain sent another
    # at once: that one was turned away, and the tab was told so.
    assert any(tab.turned_away for tab in tabs), server.output
    assert "arriving meanwhile turned away" in server.output
    assert "Traceback" not in server.output


def _stored_notes(env: dict[str, str], prefix: str) -> set[str]:
    engine = db.create(load(env))
    try:
        with Session(engine) as s:
            rows = s.execute(
                select(Note.body).join(Account).where(Account.username.startswith(prefix))
            )
            return {body for (body,) in rows}
    finally:
        engine.dispose()
