"""Sessions and log-ins against a real `working serve`, over real Socket.IO and HTTP clients:
the HttpOnly cookie, a revoked session's old tab, a login flood, the periodic purge."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from margins import within
from sqlalchemy import select
from sqlalchemy.orm import Session

from services import REPO, Server, base_env, free_port, wait_until
from working import auth
from working.models import LoginSession
from working.runtime import db, migrations
from working.runtime.settings import load

sys.path.insert(0, str(REPO))
from bench.reflex_client import (
    ReflexClient,
    delta_for,
    full_name,
    logged_in,
    ticket_of,
)

pytestmark = pytest.mark.slow

PASSWORD = "correct horse"
AUTH = full_name("AuthState")
NOTES = full_name("NotesState")
COOKIE = "working_session"


@pytest.fixture
def server(
    frontend_export: Path, database_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[Server, dict[str, str]]]:
    port = free_port()
    env = {
        "PORT": str(port),
        "FRONTEND_DIR": str(frontend_export),
        # The flood's 150 tabs come from one address: the per-client connection limit
        # (MAX_CONNECTIONS_PER_CLIENT, issue #12 item 1) is not this file's subject.
        "MAX_CONNECTIONS_PER_CLIENT": "1000",
        **database_env,
    }
    srv = Server(base_env(**env), port, cwd=tmp_path).start()
    srv.wait_healthy()
    yield srv, env
    srv.stop()


def _redeem(url: str, ticket: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{url}/_auth/session", content=ticket, headers={"Origin": url, **headers}, timeout=10
    )


def _cookie_of(response: httpx.Response) -> str:
    header = response.headers["set-cookie"]
    name, _, rest = header.partition("=")
    assert name == COOKIE
    return rest.split(";", 1)[0]


def test_the_cookie_is_httponly_and_a_revoked_tab_forgets_its_user(server) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server
    name = f"u{uuid.uuid4().hex[:8]}"
    secret = f"secret note {uuid.uuid4()}"

    async def scenario() -> dict[str, object]:
        seen: dict[str, object] = {}
        first = ReflexClient(srv.url)
        await first.connect()
        await first.hydrate("/signup")
        form = {"username": name, "password": PASSWORD}
        signed = await first.event(full_name("AuthState.sign_up"), {"form": form}, until=logged_in)
        ticket = ticket_of(signed)
        await first.hydrate("/notes")
        await first.event(full_name("NotesState.add"), {"form": {"body": secret}})

        # Cross-site: refused, and the ticket still works afterwards.
        foreign = _redeem(srv.url, ticket, Origin="http://evil.example")
        seen["foreign"] = foreign.status_code
        response = await asyncio.to_thread(_redeem, srv.url, ticket)
        seen["set_cookie"] = response.headers.get("set-cookie", "")
        seen["again"] = (await asyncio.to_thread(_redeem, srv.url, ticket)).status_code
        token = _cookie_of(response)

        # A new tab (a reload, another window) with the cookie: logged in, and the cookie's
        # value never reaches the page (Reflex sends the handshake's headers in the state).
        second = ReflexClient(srv.url, headers={"Cookie": f"other=1; {COOKIE}={token}"})
        await second.connect()
        restored = await second.hydrate("/notes")
        seen["restored_user"] = delta_for(restored, AUTH).get("username")
        seen["restored_notes"] = [n["body"] for n in delta_for(restored, NOTES).get("notes", [])]
        seen["token_in_updates"] = token in json.dumps(restored)
        seen["other_cookie_kept"] = "other=1" in json.dumps(restored)

        # Logged out from the second tab; the first tab comes back with its old token.
        await second.event(full_name("AuthState.log_out"))
        await second.close()
        old_token = first.token
        await first.close()
        back = ReflexClient(srv.url, token=old_token)
        await back.connect()
        rehydrated = await back.hydrate("/notes")
        seen["old_tab"] = json.dumps(rehydrated)
        seen["old_tab_user"] = delta_for(rehydrated, AUTH).get("username")
        seen["old_tab_notes"] = delta_for(rehydrated, NOTES).get("notes")
        await back.close()

        # The old cookie opens nothing either.
        stale = ReflexClient(srv.url, headers={"Cookie": f"{COOKIE}={token}"})
        await stale.connect()
        seen["stale_user"] = delta_for(await stale.hydrate("/notes"), AUTH).get("username")
        await stale.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen["foreign"] == 403
    cookie = str(seen["set_cookie"])
    assert cookie.startswith(f"{COOKIE}=")
    assert "; HttpOnly" in cookie
    assert "; SameSite=Strict" in cookie
    assert "; Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP
    assert seen["again"] == 403  # one-time
    assert seen["restored_user"] == name
    assert seen["restored_notes"] == [secret]
    assert seen["token_in_updates"] is False
    assert seen["other_cookie_kept"] is True
    assert seen["old_tab_user"] == ""
    assert seen["old_tab_notes"] == []
    assert name not in str(seen["old_tab"])
    assert secret not in str(seen["old_tab"])
    assert seen["stale_user"] == ""


def test_the_cookie_is_secure_behind_https(server) -> None:  # type: ignore[no-untyped-def]
    """Behind a TLS-terminating proxy (X-Forwarded-Proto from a trusted address: loopback)."""
    srv, _ = server

    async def ticket() -> str:
        async with ReflexClient(srv.url) as c:
            await c.hydrate("/signup")
            form = {"username": f"s{uuid.uuid4().hex[:8]}", "password": PASSWORD}
            return ticket_of(
                await c.event(full_name("AuthState.sign_up"), {"form": form}, until=logged_in)
            )

    response = _redeem(srv.url, asyncio.run(ticket()), **{"X-Forwarded-Proto": "https"})
    assert response.status_code == 204
    assert response.headers["set-cookie"].endswith("; HttpOnly; SameSite=Strict; Secure")
    # Logging out clears it.
    out = httpx.post(
        f"{srv.url}/_auth/logout",
        headers={"Origin": srv.url, "Cookie": f"{COOKIE}={_cookie_of(response)}"},
        timeout=10,
    )
    assert out.status_code == 204
    assert out.headers["set-cookie"].startswith(f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly")


def test_expired_sessions_are_purged_by_the_running_app(
    frontend_export: Path, database_env: dict[str, str], tmp_path: Path
) -> None:
    settings = load(database_env)
    engine = db.create(settings)
    try:
        migrations.apply(engine)
        with Session(engine) as s, s.begin():
            user = auth.sign_up(s, "alice", PASSWORD)
            live = auth.open_session(s, user.id, "127.0.0.1", timedelta(hours=1))
            expired = auth.open_session(
                s, user.id, "127.0.0.1", timedelta(hours=1), datetime.now(UTC) - timedelta(days=2)
            )

        def session_ids() -> set[int]:
            with Session(engine) as s:
                return set(s.scalars(select(LoginSession.id)))

        assert session_ids() == {live.session_id, expired.session_id}
        port = free_port()
        env = base_env(PORT=str(port), FRONTEND_DIR=str(frontend_export), **database_env)
        srv = Server(env, port, cwd=tmp_path).start()
        try:
            srv.wait_healthy()
            wait_until(lambda: session_ids() == {live.session_id}, 30, "the expired session purged")
            # The line may reach the pipe a moment after the row is gone.
            wait_until(lambda: "purged 1 expired session(s)" in srv.output, 10, "the purge line")
        finally:
            srv.stop()
    finally:
        engine.dispose()


def test_an_attacker_slows_down_itself_not_the_owner(server) -> None:  # type: ignore[no-untyped-def]
    """Two client addresses (as a trusted proxy reports them in X-Forwarded-For): the one
    that hammers an account is refused with growing delays, the owner logs in meanwhile, and
    a name that does not exist answers exactly as an existing one does."""
    srv, _ = server
    name = f"o{uuid.uuid4().hex[:8]}"

    def tab(address: str) -> ReflexClient:
        return ReflexClient(srv.url, headers={"X-Forwarded-For": address})

    async def answers(c: ReflexClient, username: str, password: str, times: int) -> list[str]:
        out = []
        for _ in range(times):
            form = {"username": username, "password": password}
            updates = await c.event(
                full_name("AuthState.log_in"),
                {"form": form},
                until=lambda u: logged_in(u) or _auth_error(u),
                timeout=60,
            )
            out.append(
                "logged in" if logged_in(updates) else delta_for(updates, AUTH)["auth_error"]
            )
        return out

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        async with tab("198.51.100.7") as owner:
            await owner.hydrate("/signup")
            form = {"username": name, "password": PASSWORD}
            await owner.event(full_name("AuthState.sign_up"), {"form": form}, until=logged_in)
        async with tab("203.0.113.9") as attacker:
            await attacker.hydrate("/login")
            hammered = await answers(attacker, name, "not the password", 7)
            unknown = await answers(attacker, f"x{name}", "not the password", 7)
        async with tab("198.51.100.7") as owner:
            await owner.hydrate("/login")
            return hammered, unknown, await answers(owner, name, PASSWORD, 1)

    hammered, unknown, owner = asyncio.run(scenario())
    assert hammered[:5] == [auth.WRONG] * 5
    assert all(a.startswith("Too many attempts; try again in ") for a in hammered[5:])
    assert [a.split(" in ")[0] for a in unknown] == [a.split(" in ")[0] for a in hammered]
    assert owner == ["logged in"]


# -- the login flood ------------------------------------------------------------------------

FLOOD = 150


def test_a_login_flood_leaves_health_and_other_users_alone(server) -> None:  # type: ignore[no-untyped-def]
    """150 tabs log in at once with names that do not exist (one scrypt each, were they
    checked); meanwhile /health answers 200 and a logged-in user's events stay fast."""
    srv, _ = server
    numbers: dict[str, object] = {}

    async def scenario() -> None:
        user = ReflexClient(srv.url)
        await user.connect()
        await user.hydrate("/signup")
        form = {"username": f"u{uuid.uuid4().hex[:8]}", "password": PASSWORD}
        await user.event(full_name("AuthState.sign_up"), {"form": form}, until=logged_in)
        await user.hydrate("/notes")

        async def event_latencies(stop: asyncio.Event) -> list[float]:
            latencies = []
            while not stop.is_set():
                started = time.perf_counter()
                await user.event(full_name("NotesState.load"), timeout=30, until=_notes_sent)
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)
            return latencies

        async def health(stop: asyncio.Event) -> list[tuple[int, float]]:
            results = []
            async with httpx.AsyncClient(timeout=10) as http:
                while not stop.is_set():
                    started = time.perf_counter()
                    status = (await http.get(f"{srv.url}/health")).status_code
                    results.append((status, time.perf_counter() - started))
                    await asyncio.sleep(0.1)
            return results

        baseline = [
            (await _timed(user.event(full_name("NotesState.load"), until=_notes_sent)))
            for _ in range(10)
        ]
        # The attackers run in a process of their own, so that their 150 clients do not
        # slow down this one's measurements; their tabs connect first (connecting that many
        # sockets at once is the subject of the connection limits, not of this test).
        ctx = multiprocessing.get_context("spawn")
        ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
        flood = ctx.Process(target=_flood, args=(srv.url, ready, go, results), daemon=True)
        flood.start()
        assert await asyncio.to_thread(ready.wait, 120), "the attackers did not connect"
        stop = asyncio.Event()
        watchers = [asyncio.create_task(event_latencies(stop)), asyncio.create_task(health(stop))]
        await asyncio.sleep(0.5)  # the watchers' first rounds: before the flood
        go.set()
        answers, numbers["flood_s"] = await asyncio.to_thread(results.get, True, 180)
        stop.set()
        await asyncio.to_thread(flood.join, 30)
        latencies, healths = await asyncio.gather(*watchers)
        await user.close()
        numbers.update(
            answers=answers,
            baseline_ms=[round(x * 1000, 1) for x in baseline],
            latencies=latencies,
            healths=healths,
        )

    asyncio.run(scenario())
    answers: list[str] = numbers["answers"]  # type: ignore[assignment]
    latencies: list[float] = numbers["latencies"]  # type: ignore[assignment]
    healths: list[tuple[int, float]] = numbers["healths"]  # type: ignore[assignment]
    wrong = sum(a == auth.WRONG for a in answers)
    refused = sum(a.startswith("Too many attempts; try again in ") for a in answers)
    report = (
        f"flood of {FLOOD} log-ins: {numbers['flood_s']:.1f}s, {wrong} checked, {refused} "
        f"refused; /health {len(healths)} probes, statuses {sorted({s for s, _ in healths})}, "
        f"max {max(t for _, t in healths) * 1000:.0f} ms; user event baseline median "
        f"{statistics.median(numbers['baseline_ms']):.1f} ms, during the flood "  # type: ignore[arg-type]
        f"{len(latencies)} events, median {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.0f} ms"
    )
    print(report)
    assert wrong + refused == FLOOD, answers
    # The per-client rate (LOGIN_RATE=20 a minute from this one address) refused most at once.
    assert refused >= FLOOD - 20 - 1, report
    assert {s for s, _ in healths} == {200}, report
    assert len(healths) >= 3, report
    # What the issue saw before the fix: /health flapping to 503 ("database disconnected", its
    # probe's 2 s timeout) and a user's events at 3.2 s while the flood lasted. Now /health
    # stays 200 and the user's median event stays fast. The worst single stall (measured
    # 0.9-2.5 s on this shared 2-core machine at load average 12-17) is the moment the server
    # takes 150 events at once, Reflex's own cost per event, the same for any event: its
    # bound is generous so as not to flake under load.
    assert max(t for _, t in healths) < within(4.0), report
    assert statistics.median(latencies) < within(0.5), report
    assert max(latencies) < within(5.0), report


def _flood(url: str, ready, go, results) -> None:  # type: ignore[no-untyped-def]
    """The attackers' process: FLOOD tabs connect, then all log in at once when told."""

    async def run() -> tuple[list[str], float]:
        setup = asyncio.Semaphore(25)

        async def connect() -> ReflexClient:
            async with setup:
                c = ReflexClient(url, connect_timeout=60)
                await c.connect()
                await c.hydrate("/login", timeout=60)
                return c

        async def attack(n: int, c: ReflexClient) -> str:
            form = {"username": f"nobody{n}x{uuid.uuid4().hex[:6]}", "password": "guess guess"}
            updates = await c.event(
                full_name("AuthState.log_in"), {"form": form}, until=_auth_error, timeout=120
            )
            return str(delta_for(updates, AUTH)["auth_error"])

        tabs = await asyncio.gather(*(connect() for _ in range(FLOOD)))
        ready.set()
        await asyncio.to_thread(go.wait, 120)
        started = time.perf_counter()
        answers = await asyncio.gather(*(attack(n, c) for n, c in enumerate(tabs)))
        took = time.perf_counter() - started
        await asyncio.gather(*(c.close() for c in tabs))
        return answers, took

    results.put(asyncio.run(run()))


async def _timed(awaitable) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    await awaitable
    return time.perf_counter() - started


def _notes_sent(updates: list[dict]) -> bool:
    return any("notes_rx_state_" in (u.get("delta") or {}).get(NOTES, {}) for u in updates)


def _auth_error(updates: list[dict]) -> bool:
    return bool(delta_for(updates, AUTH).get("auth_error"))
