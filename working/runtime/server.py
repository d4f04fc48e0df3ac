"""One port, one process: the Reflex backend and the static frontend behind uvicorn.

Shutdown is one ordered routine with one deadline. The first SIGTERM or SIGINT marks /health
as draining and lets uvicorn stop accepting, finish in-flight requests and close WebSockets
(browsers reconnect elsewhere); a second signal, or SHUTDOWN_TIMEOUT, ends the process at once.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Sequence
from types import FrameType
from typing import Any, NamedTuple

import uvicorn
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import app as app_seam
from . import (
    build_facts,
    db,
    draining,
    http_protocol,
    limits,
    logs,
    reflex_config,
    security_headers,
    statestore,
)
from .access_log import AccessLog
from .contract import contract, exit_code
from .errors import WorkingError
from .health import Health
from .masking import describe
from .settings import Settings
from .static import FrontendFiles

log = logging.getLogger("working.server")

# Reserved out of SHUTDOWN_TIMEOUT for what follows the drain: lifespan shutdown, pool disposal.
_AFTER_DRAIN_S = 2.0
# On a second signal: how long the app's own shutdown may take.
_FORCED_LIFESPAN_S = 1.0

# With Redis: the session failover of this process's app (see failover.py).
_failover: Any = None


class Built(NamedTuple):
    app: ASGIApp
    # uvicorn's `http=`: the protocol that bounds request heads and answers the export's files.
    http: type[asyncio.Protocol]


def build(settings: Settings, health: Health) -> Built:
    """The Reflex app with /health, /livez and the static export mounted beside its backend."""
    from reflex_base.environment import environment

    # The frontend is prebuilt: Reflex must not compile or write anything at start.
    environment.REFLEX_SKIP_COMPILE.set(True)
    config = reflex_config.load()
    # Before the app's module runs: it may open rx.session() at import.
    db.share_with_reflex(settings)
    app = app_seam.load()
    build_facts.apply(settings.frontend_dir)
    for line in app_seam.shadowed_pages(app):
        log.warning("%s", line)

    http = contract()["http"]
    csp = security_headers.Policy(
        settings.frontend_dir,
        security_headers.declared_sources(config),
        dynamic_components=app_seam.uses_dynamic_components(app),
    )
    log.info("content security policy: %s", csp.summary())
    secure = security_headers.headers(csp)
    static = FrontendFiles(
        settings.frontend_dir,
        secure,
        reserved=app_seam.reserved_paths(),
        dynamic=app_seam.dynamic_routes(app),
    )

    def attach(api):  # type: ignore[no-untyped-def]
        # Reflex's own /_health answered 500 and a traceback on every request: /health is ours.
        api.routes[:] = [r for r in api.routes if getattr(r, "path", None) != "/_health"]
        for path, endpoint in (
            (http["health_path"], health.endpoint),
            (http["liveness_path"], health.livez),
        ):
            # With a trailing slash too: there the export may hold an app's page (index.html).
            for variant in (path, path + "/"):
                api.routes.insert(0, Route(variant, endpoint, methods=["GET", "HEAD"]))
        # Last: what no backend route claims gets the export's 404 page.
        api.routes.append(Mount("/", static, name="frontend"))
        return api

    # First, on Reflex's own Starlette app: the app's transformers (if any) wrap it after.
    attach.working_runtime = True  # type: ignore[attr-defined]
    app.api_transformer = [attach, *_transformers(app.api_transformer)]
    asgi = app()
    logs.route_reflex_console()
    if settings.redis_url:
        from . import failover

        global _failover
        _failover = failover.install(app)
    else:
        statestore.expire_idle_states(app, settings.state_idle_ttl)
    draining.install(app)
    if not settings.allowed_origins and app.sio is not None:
        # Same origin only: Socket.IO checks the Origin against Host (and X-Forwarded-*).
        # (No Socket.IO server, none to restrict: Reflex makes one only for an app with state.)
        app.sio.eio.cors_allowed_origins = None
    limits.guard_events(app)
    backend: ASGIApp = limits.ConnectionLimit(asgi, settings.max_connections_per_client)
    backend = limits.UploadLimit(backend)
    backend = security_headers.SecurityHeaders(backend, secure)
    access = AccessLog(_files_first(static, backend), settings.log_format)
    atexit.register(access.flush)
    # Everything built so far (the component tree, the compiled app: most of the heap) lives
    # as long as the process. Frozen, the collector stops walking it on every full collection,
    # which otherwise stalls all connected browsers for tens of milliseconds. No collection
    # first: it took a tenth of the start to find a few hundred unreachable objects.
    gc.freeze()
    gc.enable()  # off during start-up (see entrypoint.serve)
    return Built(access, http_protocol.protocol(static, access))


def _transformers(declared: Any) -> list[Any]:
    """The app's own api_transformer(s), without the runtime's from an earlier build."""
    if declared is None:
        return []
    listed = list(declared) if isinstance(declared, Sequence) else [declared]
    return [t for t in listed if not getattr(t, "working_runtime", False)]


def _files_first(static: FrontendFiles, backend: ASGIApp) -> ASGIApp:
    """Files of the export skip the backend's middleware and router: most requests are these,
    and none of them needs CORS headers or Reflex's request context."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and static.match(scope["path"]):
            await static(scope, receive, send)
        else:
            await backend(scope, receive, send)

    return dispatch


class _Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        health: Health,
        settings: Settings,
        ready: Any = None,
    ) -> None:
        super().__init__(config)
        logging.getLogger("uvicorn.error").addFilter(_not_cancelled_at_deadline)
        self.health = health
        self.settings = settings
        self.forced = False
        # A worker under the supervisor: it reports readiness, and only SIGTERM (from the
        # supervisor) stops it; a terminal's Ctrl-C reaches the supervisor, which forwards it.
        self.ready = ready

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Unlike uvicorn's, this does not re-raise the signal afterwards: a drained stop is a
        # normal stop and the process exits 0 (it runs as PID 1, with no shell to translate).
        handled = (signal.SIGTERM,) if self.ready is not None else (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        name = signal.Signals(sig).name
        if self.should_exit:
            log.warning("%s again: stopping now without waiting for connections", name)
            self.forced = self.force_exit = True
            return
        log.info(
            "%s: draining (up to %gs); /health reports draining",
            name,
            self.settings.shutdown_timeout,
        )
        self.health.draining = True
        self.should_exit = True
        _start_deadline(self.settings.shutdown_timeout)

    async def shutdown(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
        began = time.monotonic()
        budget = self.config.timeout_graceful_shutdown or 0.0
        # Stop accepting now (uvicorn's shutdown does it again, harmlessly): the events in
        # flight finish and reach their tabs before uvicorn closes the WebSockets.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        spent = await _drain_events(budget, lambda: self.force_exit)
        # Before the WebSockets close, after the last events: the replicas their browsers
        # reconnect to may take their sessions over (with Redis; a no-op otherwise).
        await _retire_sessions()
        # One budget for both drains: what the events took, HTTP requests no longer get.
        # uvicorn declares an int but only hands it to asyncio.wait_for, which takes a float.
        self.config.timeout_graceful_shutdown = max(0.1, budget - spent)  # type: ignore[assignment]
        await super().shutdown(sockets=sockets)
        if self.force_exit:
            # uvicorn skips the app's own shutdown on a second signal, and the app's lifespan
            # task, cancelled at exit mid-wait, is then reported as a crash with a traceback.
            # Closing what the app opened takes milliseconds; give it a bounded moment.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.lifespan.shutdown(), _FORCED_LIFESPAN_S)
        # uvicorn cancels what is still running when the drain deadline passes: not a clean stop.
        if time.monotonic() - began >= budget:
            self.forced = True

    async def startup(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
        await super().startup(sockets=sockets)
        if not self.started:
            return
        if self.ready is None:
            log.info("ready on http://%s:%d", self.config.host, self.config.port)
        else:
            log.info("worker %d ready", os.getpid())
            self.ready.set()


def _not_cancelled_at_deadline(record: logging.LogRecord) -> bool:
    """uvicorn logs each request it cancels at the drain deadline as an exception, traceback
    and all; its one line "Cancel N running task(s)" already says it, and the access log
    marks each cut response (incomplete)."""
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


async def _drain_events(budget: float, give_up: Callable[[], bool]) -> float:
    drain = draining.current()
    return await drain.run(budget, give_up) if drain is not None else 0.0


async def _retire_sessions() -> None:
    if _failover is not None:
        await _failover.retire()


def _start_deadline(seconds: float) -> None:
    def expire() -> None:
        time.sleep(seconds)
        log.error("shutdown took longer than SHUTDOWN_TIMEOUT=%gs: exiting now", seconds)
        logging.shutdown()
        os._exit(exit_code("error"))

    threading.Thread(target=expire, name="shutdown-deadline", daemon=True).start()


def _config(built: Built, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        built.app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        # Access lines come from AccessLog, batched; uvicorn's own are one logging call each.
        access_log=False,
        # The request head is bounded in size and time (limits.py), the export's files are
        # answered without ASGI (http_protocol.py); WebSocket messages are bounded too.
        http=built.http,
        ws_max_size=limits.MAX_WEBSOCKET_MESSAGE_BYTES,
        timeout_keep_alive=limits.KEEP_ALIVE_TIMEOUT_S,
        # Traefik terminates TLS; its X-Forwarded-For and -Proto tell the app the client's
        # address and the page's real scheme, believed only from the proxies named here.
        proxy_headers=True,
        forwarded_allow_ips=list(settings.forwarded_allow_ips),
        server_header=False,
        # Whole seconds, as uvicorn's Config declares; rounding down only adds to the reserve.
        timeout_graceful_shutdown=int(max(1.0, settings.shutdown_timeout - _AFTER_DRAIN_S)),
    )


def serve(settings: Settings, health: Health) -> int:
    """Serve until a signal; returns the process exit code."""
    # Bound first, before the slow part: a taken port is one clear line, not a late failure.
    sock = _bind(settings)
    if settings.web_concurrency > 1:
        gc.enable()  # the supervisor builds no app; each worker does
        return _supervise(settings, sock)
    server = _Server(_config(build(settings, health), settings), health, settings)
    server.run(sockets=[sock])
    if not server.started:
        return exit_code("error")
    sys.stdout.flush()
    return exit_code("error") if server.forced else exit_code("ok")


# -- WEB_CONCURRENCY > 1: one supervisor, N worker processes on one listening socket ----------
#
# The supervisor (the entrypoint's process, PID 1 in the image) has already waited for the
# database and Redis and applied the migrations; it binds the port once and starts the workers
# (spawned, not forked: no inherited event loop, engine or threads). Each worker builds the app
# with `run_worker`, configures its own logging and serves the shared socket with the same
# drain-on-SIGTERM server as a single process. SIGTERM or SIGINT to the supervisor: it stops
# listening, forwards SIGTERM, and waits for every worker within SHUTDOWN_TIMEOUT; a second
# signal is forwarded too (the workers stop at once), the deadline kills what is left (exit 1).
# A worker that dies after it was ready is replaced; one that dies before stops everything.

_BACKLOG = 2048


def run_worker(sock: socket.socket, ready: Any) -> None:
    """A worker process's whole life (the spawn target): build the app, serve `sock`."""
    # Until the server takes the signals over: a SIGTERM now is a clean stop, not a crash.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(exit_code("ok")))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.disable()  # until build has frozen the app (see entrypoint.serve)
    from . import db, health
    from .settings import from_environ

    settings = from_environ()
    logs.configure(settings.log_level, settings.log_format)
    try:
        db.configure(settings)
        monitor = health.install(settings)
        built = build(settings, monitor)
    except Exception as exc:
        log.error(
            "worker %d could not start: %s", os.getpid(), f"{type(exc).__name__}: {describe(exc)}"
        )
        sys.exit(exit_code("error"))
    server = _Server(_config(built, settings), monitor, settings, ready=ready)
    try:
        server.run(sockets=[sock])
    finally:
        db.dispose()
    sys.stdout.flush()
    if not server.started:
        sys.exit(exit_code("error"))
    sys.exit(exit_code("error") if server.forced else exit_code("ok"))


def _bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        raise WorkingError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}; "
            "set PORT (or HOST) to a free address"
        ) from None
    sock.listen(_BACKLOG)
    sock.set_inheritable(True)
    return sock


class _Worker:
    def __init__(self, ctx: Any, sock: socket.socket, number: int) -> None:
        self.ready = ctx.Event()
        self.process = ctx.Process(
            target=run_worker, args=(sock, self.ready), name=f"working-worker-{number}"
        )
        self.process.start()

    @property
    def alive(self) -> bool:
        return self.process.exitcode is None

    def signal(self, sig: int) -> None:
        if self.alive and self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)


def _supervise(settings: Settings, sock: socket.socket) -> int:
    import multiprocessing

    # Sockets travel to spawned workers as file descriptors (what uvicorn's supervisor does).
    multiprocessing.allow_connection_pickling()
    ctx = multiprocessing.get_context("spawn")
    received: list[int] = []
    wake = threading.Event()

    def on_signal(sig: int, frame: FrameType | None) -> None:
        received.append(sig)
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    count = settings.web_concurrency
    workers = [_Worker(ctx, sock, n + 1) for n in range(count)]
    announced = failed = False
    while not received:
        wake.wait(0.25)
        if received:
            break
        for index, worker in enumerate(workers):
            if worker.alive:
                continue
            if not worker.ready.is_set():
                log.error(
                    "worker %s exited with %s before it was ready; stopping",
                    worker.process.pid,
                    worker.process.exitcode,
                )
                failed = True
                break
            log.warning(
                "worker %s exited unexpectedly (exit %s); starting another",
                worker.process.pid,
                worker.process.exitcode,
            )
            workers[index] = _Worker(ctx, sock, index + 1)
        if failed:
            break
        if not announced and all(w.ready.is_set() for w in workers):
            announced = True
            log.info("ready on http://%s:%d with %d workers", settings.host, settings.port, count)
    return _stop_workers(settings, workers, sock, received, failed)


def _stop_workers(
    settings: Settings,
    workers: list[_Worker],
    sock: socket.socket,
    received: list[int],
    failed: bool,
) -> int:
    name = signal.Signals(received[0]).name if received else "worker failure"
    log.info(
        "%s: draining %d workers (up to %gs); /health reports draining",
        name,
        sum(w.alive for w in workers),
        settings.shutdown_timeout,
    )
    # The workers hold their own copies of the socket and close them as they drain; the
    # supervisor's copy must go too, or connections would queue where nobody accepts them.
    sock.close()
    for worker in workers:
        worker.signal(signal.SIGTERM)
    forced = False
    seen = len(received)
    deadline = time.monotonic() + settings.shutdown_timeout
    while any(w.alive for w in workers):
        if len(received) > seen and not forced:
            log.warning("%s again: stopping the workers now", signal.Signals(received[-1]).name)
            forced = True
            for worker in workers:
                worker.signal(signal.SIGTERM)
        if time.monotonic() >= deadline:
            log.error(
                "workers still running after SHUTDOWN_TIMEOUT=%gs: killing them",
                settings.shutdown_timeout,
            )
            for worker in workers:
                worker.signal(signal.SIGKILL)
            forced = True
            break
        time.sleep(0.05)
    for worker in workers:
        worker.process.join(5)
    clean = all(w.process.exitcode == 0 for w in workers)
    sys.stdout.flush()
    return exit_code("ok") if clean and not (forced or failed) else exit_code("error")
