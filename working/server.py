"""One port, one process: the Reflex backend and the static frontend behind uvicorn.

Shutdown is one ordered routine with one deadline. The first SIGTERM or SIGINT marks /health
as draining and lets uvicorn stop accepting, finish in-flight requests and close WebSockets
(browsers reconnect elsewhere); a second signal, or SHUTDOWN_TIMEOUT, ends the process at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Generator
from types import FrameType

import uvicorn
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from . import reflex_config
from .contract import contract, exit_code
from .health import Health
from .settings import Settings
from .static import FrontendFiles

log = logging.getLogger("working.server")

# Reserved out of SHUTDOWN_TIMEOUT for what follows the drain: lifespan shutdown, pool disposal.
_AFTER_DRAIN_S = 2.0


def build_asgi(settings: Settings, health: Health) -> ASGIApp:
    """The Reflex app with /health, /livez and the static export mounted beside its backend."""
    from reflex_base.environment import environment

    # The frontend is prebuilt: Reflex must not compile or write anything at start.
    environment.REFLEX_SKIP_COMPILE.set(True)
    reflex_config.pin()
    from .working import app

    http = contract()["http"]

    def attach(api):  # type: ignore[no-untyped-def]
        api.routes.insert(0, Route(http["health_path"], health.endpoint, methods=["GET", "HEAD"]))
        api.routes.insert(0, Route(http["liveness_path"], health.livez, methods=["GET", "HEAD"]))
        # Last, so that every backend route (/_event, /ping, ...) wins over a file of that name.
        api.routes.append(Mount("/", FrontendFiles(settings.frontend_dir), name="frontend"))
        return api

    app.api_transformer = attach
    asgi = app()
    if not settings.allowed_origins:
        # Same origin only: Socket.IO checks the Origin against Host (and X-Forwarded-*).
        app.sio.eio.cors_allowed_origins = None
    return asgi


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, health: Health, settings: Settings) -> None:
        super().__init__(config)
        self.health = health
        self.settings = settings
        self.forced = False

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Unlike uvicorn's, this does not re-raise the signal afterwards: a drained stop is a
        # normal stop and the process exits 0 (it runs as PID 1, with no shell to translate).
        handled = (signal.SIGINT, signal.SIGTERM)
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
        await super().shutdown(sockets=sockets)
        # uvicorn cancels what is still running when the drain deadline passes: not a clean stop.
        if time.monotonic() - began >= (self.config.timeout_graceful_shutdown or 0):
            self.forced = True

    async def startup(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
        await super().startup(sockets=sockets)
        if self.started:
            log.info("ready on http://%s:%d", self.config.host, self.config.port)


def _start_deadline(seconds: float) -> None:
    def expire() -> None:
        time.sleep(seconds)
        log.error("shutdown took longer than SHUTDOWN_TIMEOUT=%gs: exiting now", seconds)
        logging.shutdown()
        os._exit(exit_code("error"))

    threading.Thread(target=expire, name="shutdown-deadline", daemon=True).start()


def serve(settings: Settings, health: Health) -> int:
    """Serve until a signal; returns the process exit code."""
    app = build_asgi(settings, health)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        access_log=True,
        # Traefik terminates TLS; its X-Forwarded-Proto tells the app the page's real scheme.
        proxy_headers=True,
        forwarded_allow_ips="*",
        server_header=False,
        timeout_graceful_shutdown=max(1.0, settings.shutdown_timeout - _AFTER_DRAIN_S),
    )
    server = _Server(config, health, settings)
    server.run()
    if not server.started:
        return exit_code("error")
    sys.stdout.flush()
    return exit_code("error") if server.forced else exit_code("ok")
