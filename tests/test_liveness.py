"""Container health is "can this container serve", not "are its dependencies up".

With the database stopped, the container healthcheck still passes (so Traefik keeps routing),
the pages answer, /status and the notes page tell the user the database is down, and /health
reports the outage to monitors. A draining process fails the healthcheck.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from slow_clients import start_slow_downloads

from services import REPO, Postgres, Server, base_env
from working.working import DATABASE_DOWN

sys.path.insert(0, str(REPO))
from bench.reflex_client import (
    ReflexClient,
    client_storage_vars,
    delta_for,
    full_name,
    logged_in,
)

pytestmark = pytest.mark.slow


def healthcheck(server: Server) -> subprocess.CompletedProcess[str]:
    """The container's healthcheck command, as Docker runs it: only PORT in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "working.runtime.entrypoint", "healthcheck"],
        env=base_env(PORT=str(server.port)),
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.postgres
def test_a_database_outage_keeps_the_container_serving_and_says_so(
    serve, pg_url: str, postgres: Postgres
) -> None:  # type: ignore[no-untyped-def]
    server = serve(DATABASE_URL=pg_url)
    server.wait_healthy()
    username = f"u{uuid.uuid4().hex[:10]}"

    async def sign_up(client: ReflexClient) -> None:
        await client.hydrate("/signup")
        form = {"username": username, "password": "correct horse"}
        await client.event(full_name("AuthState.sign_up"), {"form": form}, until=logged_in)
        await client.hydrate("/notes")

    async def during_outage(client: ReflexClient) -> tuple[list[dict], list[dict]]:
        added = await client.event(
            full_name("NotesState.add"), {"form": {"body": "written while down"}}, timeout=20
        )
        async with ReflexClient(server.url) as visitor:
            status = await visitor.hydrate("/status", timeout=20)
        return added, status

    async def scenario() -> tuple[list[dict], list[dict]]:
        async with ReflexClient(server.url, client_storage=client_storage_vars()) as client:
            await sign_up(client)
            postgres.stop()
            return await during_outage(client)

    try:
        added, status = asyncio.run(scenario())
        check = healthcheck(server)
        page = httpx.get(f"{server.url}/", timeout=10)
        health = httpx.get(f"{server.url}/health", timeout=10)
    finally:
        postgres.start()

    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("ok: ")
    assert "/livez answered 200" in check.stdout
    assert page.status_code == 200
    assert "<html" in page.text
    assert health.status_code == 503
    assert health.json()["database"]["status"] == "disconnected"
    # /status, as a tab renders it: the outage in words, and the health result.
    shown = delta_for(status, full_name("StatusState"))
    assert shown["outage"] == DATABASE_DOWN
    assert shown["status"] == "degraded (503)"
    # A notes action while the database is down says so, instead of "something went wrong".
    told = str([u.get("events") for u in added])
    assert "The database is unreachable right now" in told, added
    assert "Something went wrong" not in told
    assert server.process is not None
    assert server.process.poll() is None
    assert "Traceback" not in server.output


def test_a_draining_process_fails_the_healthcheck(serve, export_with_large_asset: Path) -> None:  # type: ignore[no-untyped-def]
    server = serve(SHUTDOWN_TIMEOUT="20", FRONTEND_DIR=str(export_with_large_asset))
    server.wait_healthy()
    before = healthcheck(server)
    assert before.returncode == 0, before.stdout
    threads, _ = start_slow_downloads(server, 3)
    server.signal(signal.SIGTERM)
    time.sleep(0.5)
    during = healthcheck(server)
    # Still draining (the downloads hold it open): the failure is the drain, not an exit.
    assert server.process is not None
    assert server.process.poll() is None
    assert during.returncode == 1, during.stdout
    assert during.stdout.startswith("unhealthy: ")
    assert server.wait(timeout=30) == 0, server.output
    for t in threads:
        t.join(timeout=30)


def test_livez_answers_503_once_draining() -> None:
    """A request that reaches the app after the drain began (e.g. on a connection accepted just
    before) is told the truth too."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from working.runtime.health import Health
    from working.runtime.settings import load

    monitor = Health(load({}))
    app = Starlette(routes=[Route("/livez", monitor.livez)])

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get("/livez")

    alive = asyncio.run(ask())
    monitor.draining = True
    draining = asyncio.run(ask())
    assert (alive.status_code, alive.json()) == (200, {"status": "alive"})
    assert (draining.status_code, draining.json()) == (503, {"status": "draining"})
