"""Scaled out: workers and replicas sharing Redis and PostgreSQL behind a real load balancer.

Three `working serve` replicas (started at the same moment against an empty database), Debian's
redis-server and nginx (round-robin, no stickiness, WebSocket upgrade passed through), real
Socket.IO clients speaking Reflex's event protocol and headless Chromium. The measured numbers
(throughput through the balancer with 1 and 3 replicas, reconnect time after a replica is
killed) are printed as `[measure]` lines (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from cluster import (
    AUTH,
    NOTES,
    Balancer,
    Cluster,
    Redis,
    ReflexClient,
    run_async,
    temp_root,
    wait_until,
)
from margins import within
from slow_clients import assert_cut_at_the_deadline, start_slow_downloads

from services import (
    PG_PASSWORD,
    MigrationGate,
    Postgres,
    Server,
    add_note,
    assert_no_password,
    base_env,
    free_port,
    sign_up,
)

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

_names = itertools.count()
MIGRATED = "[INFO] migrations: applied empty -> 0002"


def _need(exe: str) -> None:
    if shutil.which(exe) is None and not Path(f"/usr/sbin/{exe}").exists():
        pytest.skip(f"{exe} is not installed (apt-get install {exe})")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Redis]:
    _need("redis-server")
    with temp_root("working-redis-") as root:
        server = Redis(root)
        server.start()
        yield server
        server.stop()


@pytest.fixture(scope="module")
def cluster(
    redis_server: Redis, postgres: Postgres, frontend_export: Path, tmp_path_factory
) -> Iterator[Cluster]:
    """Three replicas started at the same moment against an empty database."""
    name = f"scale{os.getpid()}"
    postgres.create_database(name)
    env = {
        "DATABASE_URL": postgres.url(name),
        "REDIS_URL": redis_server.url,
        "FRONTEND_DIR": str(frontend_export),
        "DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "SHUTDOWN_TIMEOUT": "10",
        # The load test signs up its accounts from this one address: not the subject here.
        "LOGIN_RATE": "100000",
        "LOGIN_QUEUE": "1000",
    }
    nodes = Cluster(3, env, tmp_path_factory.mktemp("cwd"))
    # All three meet at the migration lock, held here until each waits at it.
    gate = MigrationGate(postgres.url(name))

    def release() -> None:
        replicas = nodes.replicas
        gate.release_when_waiting(3, lambda: all(r.process.poll() is None for r in replicas))  # type: ignore[union-attr]

    nodes.start(gate=release)
    nodes.startup_lines = [list(r.lines) for r in nodes.replicas]  # type: ignore[attr-defined]
    yield nodes
    nodes.stop()


@pytest.fixture(scope="module")
def balancer(cluster: Cluster) -> Iterator[Balancer]:
    _need("nginx")
    with temp_root("working-nginx-") as root:
        lb = Balancer(root, cluster.ports)
        lb.start()
        yield lb
        lb.stop()


def _one_line_events(server: Server) -> None:
    for line in server.lines:
        assert line.startswith(("[INFO] ", "[WARN] ", "[ERROR] ", "[DEBUG] ")), line
    assert "Traceback" not in server.output


# -- start --------------------------------------------------------------------------------


def test_redis_unreachable_at_start_exits_3_with_one_line(tmp_path: Path, frontend_export) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    url = f"redis://:{PG_PASSWORD}@127.0.0.1:{free_port()}/0"
    server = Server(
        base_env(
            PORT=str(port),
            DATA_DIR=str(tmp_path / "data"),
            FRONTEND_DIR=str(frontend_export),
            REDIS_URL=url,
            DB_WAIT_TIMEOUT="1.5",
        ),
        port,
        cwd=tmp_path,
    ).start()
    assert server.wait(30) == 3
    errors = [line for line in server.lines if line.startswith("[ERROR]")]
    assert len(errors) == 1, server.output
    assert errors[0].startswith("[ERROR] redis not reachable after 1.5s"), errors[0]
    assert "raise DB_WAIT_TIMEOUT" in errors[0]
    assert any(line.startswith("[WARN] redis not reachable (attempt 1)") for line in server.lines)
    assert_no_password(server.output, url)
    _one_line_events(server)


def test_replicas_started_together_migrate_once(cluster: Cluster) -> None:
    outputs = cluster.startup_lines  # type: ignore[attr-defined]
    applied = [line for lines in outputs for line in lines if line == MIGRATED]
    assert len(applied) == 1, "\n---\n".join("\n".join(lines) for lines in outputs)
    waited = [line for lines in outputs for line in lines if "database already at 0002" in line]
    assert len(waited) == 2
    for replica in cluster.replicas:
        body = httpx.get(f"{replica.url}/health", timeout=5).json()
        assert body["status"] == "healthy"
        assert body["redis"]["status"] == "connected"
    # They met at the lock: the fixture released it only once all three waited there.


def _two_workers(
    redis_server: Redis, pg_url: str, export: Path, tmp_path: Path, **env: str
) -> Server:
    """`working serve` with WEB_CONCURRENCY=2, both workers ready."""
    port = free_port()
    server = Server(
        base_env(
            PORT=str(port),
            DATABASE_URL=pg_url,
            REDIS_URL=redis_server.url,
            FRONTEND_DIR=str(export),
            DATA_DIR=str(tmp_path / "data"),
            WEB_CONCURRENCY="2",
            **env,
        ),
        port,
        cwd=tmp_path,
    ).start()
    try:
        server.wait_healthy(120)
        wait_until(lambda: "with 2 workers" in server.output, 60, "both workers ready")
    except BaseException:
        server.stop()
        raise
    return server


@pytest.mark.postgres
def test_workers_share_one_port_and_drain_on_sigterm(
    redis_server: Redis, pg_url: str, frontend_export: Path, tmp_path: Path
) -> None:
    server = _two_workers(redis_server, pg_url, frontend_export, tmp_path, SHUTDOWN_TIMEOUT="8")
    try:
        ready = [line for line in server.lines if line.startswith("[INFO] worker ")]
        assert len(set(ready)) == 2, server.output
        assert sum(line == MIGRATED for line in server.lines) == 1

        # Events through both workers: one session, two tabs, on whichever worker accepts.
        async def two_tabs() -> list[str]:
            first = ReflexClient(server.url)
            await first.connect()
            await first.hydrate()
            await first.send(
                f"{AUTH}.sign_up", form={"username": "workers", "password": "good password"}
            )
            await first.wait_for(lambda: bool(first.ticket), 30, "signed up")
            session = await first.redeem()
            tabs = [ReflexClient(server.url) for _ in range(4)]
            for tab in tabs:
                await tab.connect(session=session)
                await tab.hydrate()
            for tab in tabs:
                await tab.wait_for(lambda t=tab: t.var(AUTH, "username") == "workers", 30, "tab")
            for n, tab in enumerate(tabs):
                await tab.send(f"{NOTES}.add", form={"body": f"tab {n}"})
            for n, tab in enumerate(tabs):
                await tab.wait_for(
                    lambda t=tab, n=n: f"tab {n}" in {x["body"] for x in t.var(NOTES, "notes", [])},
                    30,
                    f"tab {n}: its note in its state",
                )
            for client in [first, *tabs]:
                await client.close()
            return [line for line in server.lines if "WebSocket /_event" in line]

        sockets = run_async(two_tabs())
        assert len(sockets) == 5

        # A worker killed outright is replaced; the port keeps answering meanwhile.
        workers = _worker_pids(server)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        wait_until(lambda: "exited unexpectedly" in server.output, 30, "the death noticed")
        wait_until(
            lambda: len({line for line in server.lines if line.startswith("[INFO] worker ")}) == 3,
            60,
            "a replacement worker ready",
        )
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    finally:
        server.signal(signal.SIGTERM)
        stopped = time.monotonic()
        code = server.wait(30)
    assert code == 0, server.output
    assert time.monotonic() - stopped < within(8)
    assert "[INFO] SIGTERM: draining 2 workers" in server.output
    assert server.lines[-1].startswith("[INFO] stopped after"), server.output
    _one_line_events(server)


def test_workers_past_the_deadline_are_killed(
    redis_server: Redis, pg_url: str, export_with_large_asset: Path, tmp_path: Path
) -> None:
    server = _two_workers(
        redis_server, pg_url, export_with_large_asset, tmp_path, SHUTDOWN_TIMEOUT="2"
    )
    code, took, results = _stop_during_downloads(server, 6, [signal.SIGTERM])
    assert code == 1, server.output
    assert took < 2 + within(3), f"stopped {took:.1f}s after SIGTERM with SHUTDOWN_TIMEOUT=2"
    assert not all(results), "the downloads were meant to outlast the deadline"
    assert_cut_at_the_deadline(server)


def test_a_second_signal_stops_the_workers_at_once(
    redis_server: Redis, pg_url: str, export_with_large_asset: Path, tmp_path: Path
) -> None:
    server = _two_workers(
        redis_server, pg_url, export_with_large_asset, tmp_path, SHUTDOWN_TIMEOUT="20"
    )
    code, took, _ = _stop_during_downloads(server, 4, [signal.SIGTERM, signal.SIGINT])
    assert code == 1, server.output
    assert took < within(3), f"stopped {took:.1f}s after the second signal"
    assert "[WARN] SIGINT again: stopping the workers now" in server.lines, server.output
    assert "Traceback" not in server.output


def _stop_during_downloads(
    server: Server, downloads: int, signals: list[signal.Signals]
) -> tuple[int, float, list[bool]]:
    """Send `signals` (half a second apart) with slow downloads in flight. Returns the exit
    code, the seconds from the last signal to the exit, and whether each download completed;
    asserts that no worker outlived the supervisor and that the log stayed one line per event."""
    workers = _worker_pids(server)
    assert len(workers) == 2
    threads, results = start_slow_downloads(server, downloads)
    for n, sig in enumerate(signals):
        if n:
            time.sleep(0.5)
        server.signal(sig)
        signalled = time.monotonic()
    code = server.wait(15)
    took = time.monotonic() - signalled
    for t in threads:
        t.join(30)
    assert not any(_running(pid) for pid in workers), "a worker outlived the supervisor"
    _one_line_events(server)
    return code, took, results


def _worker_pids(server: Server) -> list[int]:
    assert server.process is not None
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    return [
        int(pid)
        for pid in children.read_text().split()
        # Not multiprocessing's resource tracker, also a child: the spawned workers.
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


# -- traffic through the balancer --------------------------------------------------------------


async def _load(url: str, sessions: int, tabs: int, events: int) -> tuple[float, list[str]]:
    """`sessions` accounts, each logged in in `tabs` tabs (one Socket.IO client each, its own
    Reflex token, the session's cookie); every tab sends `events` notes at once, without
    waiting in between. Returns the seconds from the first note sent to the last one seen in
    its tab's state, and the usernames."""
    run = next(_names)
    users = [f"load{os.getpid() % 10000}r{run}s{s}" for s in range(sessions)]
    signers = [ReflexClient(url) for _ in users]
    await asyncio.gather(*(c.connect() for c in signers))
    await asyncio.gather(*(c.hydrate() for c in signers))
    for client, user in zip(signers, users, strict=True):
        await client.send(f"{AUTH}.sign_up", form={"username": user, "password": "a good password"})
    for client in signers:
        await client.wait_for(lambda c=client: bool(c.ticket), 60, "signed up")
    cookies = [await client.redeem() for client in signers]

    clients = [ReflexClient(url) for _ in range(sessions * tabs)]
    for start in range(0, len(clients), 25):
        batch = range(start, min(start + 25, len(clients)))
        await asyncio.gather(*(clients[n].connect(session=cookies[n // tabs]) for n in batch))
    for client in clients:
        await client.hydrate()
    for n, client in enumerate(clients):
        user = users[n // tabs]
        await client.wait_for(lambda c=client, u=user: c.var(AUTH, "username") == u, 60, "tab")

    def bodies(n: int) -> list[str]:
        return [f"{users[n // tabs]} tab{n % tabs} note{j:02d}" for j in range(events)]

    async def tab(n: int, client: ReflexClient) -> None:
        for body in bodies(n):
            await client.send(f"{NOTES}.add", form={"body": body})

        def done() -> bool:
            seen = {note["body"] for note in client.var(NOTES, "notes", [])}
            return seen.issuperset(bodies(n))

        await client.wait_for(done, 120, f"tab {n}: all {events} notes in its state")

    started = time.monotonic()
    await asyncio.gather(*(tab(n, c) for n, c in enumerate(clients)))
    elapsed = time.monotonic() - started

    for n, client in enumerate(clients):
        # The tab's own notes, newest first, each once: its events were applied in order.
        mine = [
            note["body"]
            for note in client.var(NOTES, "notes")
            if note["body"].startswith(f"{users[n // tabs]} tab{n % tabs} ")
        ]
        assert mine == bodies(n)[::-1], (n, mine)
        assert not client.new_token
    for client in signers + clients:
        await client.close()
    return elapsed, users


def _rows(dsn: str, users: list[str]) -> dict[str, list[str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT a.username, n.body FROM notes n JOIN accounts a ON a.id = n.account_id "
            "WHERE a.username = ANY(%s) ORDER BY n.id",
            (users,),
        ).fetchall()
    found: dict[str, list[str]] = {u: [] for u in users}
    for username, body in rows:
        found[username].append(body)
    return found


def test_100_clients_20_events_each_through_the_balancer(
    cluster: Cluster, balancer: Balancer
) -> None:
    sessions, tabs, events = 20, 5, 20
    elapsed, users = run_async(_load(balancer.url, sessions, tabs, events))
    rows = _rows(cluster.env["DATABASE_URL"], users)
    for user in users:
        assert len(rows[user]) == tabs * events, user
        assert len(set(rows[user])) == tabs * events, f"{user}: a note was stored twice"
        for t in range(tabs):
            # In id order, each tab's notes are in the order it sent them.
            mine = [b for b in rows[user] if b.startswith(f"{user} tab{t} ")]
            assert mine == [f"{user} tab{t} note{j:02d}" for j in range(events)]
    # Round-robin really spread the WebSockets over all three replicas.
    accepted = [sum("WebSocket /_event" in line for line in r.lines) for r in cluster.replicas]
    assert all(n >= 30 for n in accepted), accepted
    total = sessions * tabs * events
    print(f"\n[measure] 3 replicas: {total} events in {elapsed:.2f}s = {total / elapsed:.0f}/s")

    # The same load through a balancer with one upstream, for comparison.
    with temp_root("working-nginx1-") as root:
        single = Balancer(root, cluster.ports[:1])
        single.start()
        try:
            elapsed1, users1 = run_async(_load(single.url, sessions, tabs, events))
        finally:
            single.stop()
    assert all(len(v) == tabs * events for v in _rows(cluster.env["DATABASE_URL"], users1).values())
    print(f"[measure] 1 replica: {total} events in {elapsed1:.2f}s = {total / elapsed1:.0f}/s")


# -- a replica dies under a browser --------------------------------------------------------------


def _sockets(cluster: Cluster, since: list[int] | None = None) -> list[int]:
    """WebSockets each replica accepted (since an earlier count). The log masks the tab's
    token, so a tab's replica is the one whose count grew while only that tab was open."""
    counts = [sum("WebSocket /_event" in line for line in r.lines) for r in cluster.replicas]
    return [n - m for n, m in zip(counts, since or [0] * len(counts), strict=True)]


@pytest.mark.browser
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_browser_keeps_state_when_its_replica_dies(
    cluster: Cluster, balancer: Balancer, browser, sig: signal.Signals
) -> None:  # type: ignore[no-untyped-def]
    url = balancer.url
    user = f"kill{sig.name.lower()}{os.getpid() % 10000}"
    context = browser.new_context()
    page = context.new_page()
    # What the page receives on its WebSockets: the hydration that follows a reconnect, and
    # whether the backend handed it a new token (a fresh, empty state) instead of its own.
    frames: list[str] = []

    def watch(ws) -> None:  # type: ignore[no-untyped-def]
        ws.on("framereceived", lambda p: frames.append(p if isinstance(p, str) else repr(p)))

    page.on("websocket", watch)
    # The tab's replica is the one that accepts a WebSocket while only this tab signs up: the
    # log masks the tab's token. Sign-up ends in client-side navigation on that same socket.
    # Not a reload to start clean: the page being unloaded may open one more short-lived
    # socket (seen in the replicas' logs, on any replica) before the new page opens its own.
    before = _sockets(cluster)
    sign_up(page, url, user, "a good password")
    # The browser saw the socket answer; the replica's log line may still be in the pipe.
    wait_until(lambda: sum(_sockets(cluster, since=before)) > 0, 5, "the tab's WebSocket logged")
    add_note(page, "before one")
    add_note(page, "before two")
    # A draft lives only in the Reflex state (in Redis), not in the database.
    draft = "an unsaved draft"
    page.locator("#note-body").fill(draft)
    page.locator("#note-length").filter(has_text=f"{len(draft)} / ").wait_for()

    token = page.evaluate("window.sessionStorage.getItem('token')")
    counts = _sockets(cluster, since=before)
    assert sum(counts) == 1, counts
    victim = counts.index(1)
    cluster.replicas[victim].signal(sig)
    killed = time.monotonic()

    def reconnected() -> bool:
        now = _sockets(cluster, since=before)
        return any(n > counts[i] for i, n in enumerate(now) if i != victim)

    seen = len(frames)
    wait_until(reconnected, 30, "the page reconnected to another replica", step=0.02)
    reconnect_s = time.monotonic() - killed

    def rehydrated() -> bool:
        page.wait_for_timeout(20)  # lets Playwright deliver the frame events
        return any('"is_hydrated_rx_state_":true' in f for f in frames[seen:])

    wait_until(rehydrated, 30, "the page hydrated again after reconnecting", step=0)
    hydrated_s = time.monotonic() - killed
    # The page is live again on the new replica, with the same token and the same state.
    assert not [f for f in frames[seen:] if "new_token" in f]
    page.locator("#note-length").filter(has_text=f"{len(draft)} / ").wait_for()
    assert page.locator("#note-body").input_value() == draft
    assert page.evaluate("window.sessionStorage.getItem('token')") == token
    assert page.locator(".note-body").all_inner_texts() == ["before two", "before one"]
    assert page.locator("#current-user").inner_text() == user
    add_note(page, "after")
    answered_s = time.monotonic() - killed
    page.reload()
    page.locator(".note").nth(2).wait_for()
    assert page.locator(".note-body").all_inner_texts() == ["after", "before two", "before one"]
    context.close()

    code = cluster.replicas[victim].wait(30)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    if sig == signal.SIGTERM:
        assert "[INFO] SIGTERM: draining" in cluster.replicas[victim].output
    print(
        f"\n[measure] {sig.name}: page reconnected through the balancer in {reconnect_s:.2f}s, "
        f"hydrated with its state in {hydrated_s:.2f}s, first write answered in "
        f"{answered_s:.2f}s after the kill"
    )
    cluster.restart(victim)


# -- Redis lost and back --------------------------------------------------------------------------


def test_health_follows_redis_down_and_back_without_restart(
    cluster: Cluster, balancer: Balancer, redis_server: Redis
) -> None:
    pids = [r.process.pid for r in cluster.replicas if r.process is not None]
    redis_server.stop()
    try:
        for replica in cluster.replicas:

            def degraded(r: Server = replica) -> bool:
                response = httpx.get(f"{r.url}/health", timeout=5)
                body = response.json()
                return response.status_code == 503 and body["redis"] == {"status": "disconnected"}

            wait_until(degraded, 5, f"{replica.url}/health 503 after Redis stopped", step=0.2)
            body = httpx.get(f"{replica.url}/health", timeout=5).json()
            assert body["status"] == "degraded"
            assert body["database"]["status"] == "connected"
    finally:
        redis_server.start()
    for replica in cluster.replicas:
        wait_until(
            lambda r=replica: httpx.get(f"{r.url}/health", timeout=5).status_code == 200,
            15,
            f"{replica.url}/health 200 after Redis came back",
            step=0.2,
        )
        assert any(line.startswith("[WARN] redis: unreachable") for line in replica.lines)
    assert [r.process.pid for r in cluster.replicas if r.process is not None] == pids

    # The app serves events again (a new session: Redis restarted empty).
    async def sign_up_and_add() -> list[str]:
        client = ReflexClient(balancer.url)
        await client.connect()
        await client.hydrate()
        user = f"after{os.getpid() % 10000}"
        await client.send(f"{AUTH}.sign_up", form={"username": user, "password": "good password"})
        await client.wait_for(lambda: client.var(AUTH, "username") == user, 30, "signed up")
        await client.send(f"{NOTES}.add", form={"body": "redis is back"})
        await client.wait_for(lambda: bool(client.var(NOTES, "notes")), 30, "note added")
        await client.close()
        return [n["body"] for n in client.var(NOTES, "notes")]

    assert run_async(sign_up_and_add()) == ["redis is back"]


@pytest.mark.browser
def test_browser_keeps_its_state_across_reloads(
    cluster: Cluster, balancer: Balancer, browser
) -> None:  # type: ignore[no-untyped-def]
    """Round robin sends each reload's socket to any replica, while the old page's socket may
    still be open elsewhere (and an unloading page may open one more): the tab must keep its
    token, and so its state, rather than be taken for a duplicated tab and handed a new one."""
    user = f"reload{os.getpid() % 10000}"
    context = browser.new_context()
    page = context.new_page()
    sign_up(page, balancer.url, user, "a good password")
    token = page.evaluate("window.sessionStorage.getItem('token')")
    for n in range(10):
        draft = "draft " + "x" * n  # its length on the page says the server has it
        page.locator("#note-body").fill(draft)
        page.locator("#note-length").filter(has_text=f"{len(draft)} / ").wait_for()
        page.reload()
        page.locator("#current-user").filter(has_text=user).wait_for()
        page.locator("#note-length").filter(has_text=f"{len(draft)} / ").wait_for(timeout=5000)
        assert page.locator("#note-body").input_value() == draft, n
        assert page.evaluate("window.sessionStorage.getItem('token')") == token, n
    context.close()
