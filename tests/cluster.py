"""Real pieces of a scaled-out deployment for the tests: Redis, nginx, N `working serve`
replicas, and a Socket.IO client that speaks Reflex's event protocol.

Redis is Debian's `redis-server` on a free loopback port (stopped and started again on the same
port mid-test); nginx is Debian's, round-robin over the replicas with the WebSocket upgrade
passed through, its configuration written to a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services import Server, base_env, free_port, wait_until

# The Socket.IO path and namespace of Reflex's event endpoint (the page connects to /_event).
NAMESPACE = "/_event"
# Reflex's full state names for this app (the frontend uses the same ones).
ROOT = "reflex___state____state"
AUTH = f"{ROOT}.working___working____auth_state"
NOTES = f"{AUTH}.working___working____notes_state"
# The session cookie (HttpOnly, set by POST /_auth/session for a log-in's one-time ticket).
SESSION_COOKIE = "working_session"
_TICKET = re.compile(r'body: "([A-Za-z0-9_-]+)"')
HYDRATE = f"{ROOT}.hydrate"
UPDATE_VARS = f"{ROOT}.reflex___state____update_vars_internal_state.update_vars_internal"
ON_LOAD = f"{ROOT}.reflex___state____on_load_internal_state.on_load_internal"


def run_async(coro: Any) -> Any:
    """asyncio.run in a thread of its own: Playwright's sync API keeps a loop in this one."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="reflex-clients")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


class Redis:
    """Debian's redis-server, without persistence, like the compose profile."""

    def __init__(self, root: Path) -> None:
        self.exe = shutil.which("redis-server")
        self.port = free_port()
        self.root = root
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.exe is not None
        self.process = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                "--logfile",
                str(self.root / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, 10, "redis-server answering PING")

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


# How a proxy in front of the app passes a request on (the WebSocket upgrade, the client's
# address, an upstream that fails fast): this nginx and the proxy image of docker_services.py.
PROXY_TO_APP = """\
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_read_timeout 1h;"""


class Balancer:
    """nginx in front of the replicas: round-robin, no stickiness, WebSockets passed through."""

    def __init__(self, root: Path, upstreams: list[int]) -> None:
        self.exe = shutil.which("nginx") or "/usr/sbin/nginx"
        self.port = free_port()
        self.root = root
        self.upstreams = upstreams
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        servers = "\n".join(
            f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;"
            for port in self.upstreams
        )
        root = self.root
        return f"""
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    log_format upstream '$upstream_addr $status "$request"';
    access_log {root}/access.log upstream;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream app {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
{PROXY_TO_APP}
            proxy_max_temp_file_size 0;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""

    def start(self) -> None:
        conf = self.root / "nginx.conf"
        conf.write_text(self.config())
        self.process = subprocess.Popen(
            [self.exe, "-p", str(self.root), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_until(self._listening, 10, "nginx listening")

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            stderr = self.process.stderr.read().decode() if self.process.stderr else ""
            raise AssertionError(f"nginx exited {self.process.returncode}: {stderr}")
        try:
            httpx.get(f"{self.url}/livez", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Cluster:
    """N replicas of `working serve` sharing one PostgreSQL database and one Redis."""

    def __init__(self, count: int, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.replicas = [self._replica(free_port()) for _ in range(count)]

    def _replica(self, port: int) -> Server:
        return Server(base_env(**self.env, PORT=str(port)), port, cwd=self.cwd)

    @property
    def ports(self) -> list[int]:
        return [r.port for r in self.replicas]

    def start(self, timeout: float = 90, gate: Callable[[], None] | None = None) -> None:
        """Start every replica, all healthy; if one fails, none is left running. `gate` runs
        once all are launched, before waiting for them (e.g. MigrationGate's release)."""
        try:
            for replica in self.replicas:
                replica.start()
            if gate is not None:
                gate()
            for replica in self.replicas:
                replica.wait_healthy(timeout)
        except BaseException:
            # The caller's fixture never reaches its teardown: stop what was started here.
            self.stop()
            raise

    def restart(self, index: int, timeout: float = 90) -> None:
        """A new process on the same port (what an orchestrator does for a dead replica)."""
        old = self.replicas[index]
        old.stop()
        self.replicas[index] = self._replica(old.port).start()
        self.replicas[index].wait_healthy(timeout)

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()


@contextlib.contextmanager
def temp_root(prefix: str):  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


class ReflexClient:
    """One browser tab, minus the browser: a Socket.IO connection to /_event that sends
    Reflex events by their full handler name, follows the events the backend chains (as the
    frontend's queue does) and keeps the state the deltas describe."""

    def __init__(self, url: str, token: str | None = None, path: str = "/notes") -> None:
        import socketio

        self.url = url
        self.token = token or str(uuid.uuid4())
        self.path = path
        self.state: dict[str, dict[str, Any]] = {}
        self.deltas = 0
        self._changed = asyncio.Event()
        self.sio = socketio.AsyncClient(reconnection=False)
        self.new_token = False
        # The one-time ticket of this tab's latest log-in or sign-up ("" until then).
        self.ticket = ""
        self.sio.on("event", self._on_event, namespace=NAMESPACE)
        self.sio.on("new_token", self._on_new_token, namespace=NAMESPACE)

    async def connect(self, timeout: float = 20, session: str = "") -> None:
        """`session`: the session cookie's value, sent with the handshake as a browser does."""
        cookie = {"Cookie": f"{SESSION_COOKIE}={session}"} if session else {}
        await self.sio.connect(
            f"{self.url}?token={self.token}",
            socketio_path="/_event",
            transports=["websocket"],
            headers={"Origin": self.url, **cookie},
            namespaces=[NAMESPACE],
            wait_timeout=timeout,
        )

    async def close(self) -> None:
        await self.sio.disconnect()

    async def send(self, name: str, **payload: Any) -> None:
        path = self.path
        await self.sio.emit(
            "event",
            {
                "name": name,
                "payload": payload,
                "router_data": {"pathname": path, "asPath": path, "query": {}},
            },
            namespace=NAMESPACE,
        )

    async def hydrate(self) -> None:
        """What a page load sends: hydrate, then the page's on_load events (the session
        cookie, if any, came with the WebSocket's handshake)."""
        await self.send(HYDRATE)
        await self.send(ON_LOAD)

    async def redeem(self) -> str:
        """What the page does after a log-in: trade the ticket for the session cookie."""
        async with httpx.AsyncClient(timeout=20) as http:
            response = await http.post(
                f"{self.url}/_auth/session", content=self.ticket, headers={"Origin": self.url}
            )
        response.raise_for_status()
        return response.cookies[SESSION_COOKIE]

    def var(self, state: str, name: str, default: Any = None) -> Any:
        return self.state.get(state, {}).get(f"{name}_rx_state_", default)

    async def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"{what}: not within {timeout}s (token {self.token})")
            self._changed.clear()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _on_event(self, update: dict[str, Any]) -> None:
        for state, values in (update.get("delta") or {}).items():
            self.state.setdefault(state, {}).update(values)
        for event in update.get("events") or ():
            code = (event.get("payload") or {}).get("javascript_code") or ""
            if event.get("name") == "_call_script" and (found := _TICKET.search(code)):
                self.ticket = found.group(1)
        self.deltas += 1
        self._changed.set()
        # update["events"] holds frontend-only events (_redirect, ...): the backend runs the
        # events its handlers chain by itself.

    async def _on_new_token(self, token: str) -> None:
        self.token = token
        self.new_token = True
