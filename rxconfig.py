"""Reflex's configuration, taken from the same typed settings the entrypoint uses.

Shipped in the wheel as a top-level module, so the installed app finds it from any directory.
"""

import reflex as rx
from reflex_base.environment import environment

from working.settings import from_environ

# The Reflex version is pinned in uv.lock; nothing at build or run time asks PyPI for a newer one.
environment.REFLEX_CHECK_LATEST_VERSION.set(False)

settings = from_environ()

config = rx.Config(
    app_name="working",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    # The backend is served on the same port as the static frontend: one origin, one port.
    frontend_port=settings.port,
    backend_port=settings.port,
    api_url=f"http://localhost:{settings.port}",
    db_url=settings.database_url,
    redis_url=settings.redis_url,
    # Without Redis, state lives in memory: what must survive a restart is in the database
    # (accounts, sessions, notes). Reflex's default, "disk", would pickle every state change
    # into the working directory, costing CPU per event and leaving states that a deploy of
    # changed state classes could no longer read.
    state_manager_mode="redis" if settings.redis_url else "memory",
    cors_allowed_origins=list(settings.allowed_origins),
    plugins=[rx.plugins.RadixThemesPlugin()],
    disable_plugins=[rx.plugins.SitemapPlugin],
)
