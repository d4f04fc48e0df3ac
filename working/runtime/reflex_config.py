"""Reflex's configuration, and how Reflex finds it from any working directory.

Reflex imports its config as the top-level module `rxconfig`, searching the current directory
only, and re-imports it whenever an App is created. The image runs from its data directory, so
the rxconfig.py beside the package is pinned as the one answer to that import. That module only
calls `app_config(...)` with what the app declares, and an editable install pins the checkout's
own: the copy such an install leaves in site-packages is never refreshed, and once silently kept
an old config serving.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import traceback
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

import reflex as rx
from reflex_base.constants import StateManagerMode
from reflex_base.environment import environment

from .errors import ConfigError, WorkingError
from .settings import from_environ

_MODULE = "rxconfig"
_PACKAGE = "working"


# What the runtime decides, whatever the app declares: one port for everything, the database
# and Redis from the environment, state kept where the runtime can drain and expire it.
OWNED = {
    "app_name": "the package is `working`: the app is working/working.py",
    "app_module_import": "the app is working/working.py",
    "frontend_port": "set PORT",
    "backend_port": "set PORT",
    "api_url": "the frontend calls its own origin",
    "deploy_url": "the frontend calls its own origin",
    "db_url": "set DATABASE_URL",
    "redis_url": "set REDIS_URL",
    "state_manager_mode": "set REDIS_URL (Redis) or leave it unset (memory)",
    "cors_allowed_origins": "set ALLOWED_ORIGINS",
    "telemetry_enabled": "the runtime never sends telemetry",
}


def app_config(**declared: Any) -> rx.Config:
    """Reflex's config: what the app declares in rxconfig.py (plugins, theme, ...) and what
    the runtime owns, taken from the same typed settings the entrypoint uses."""
    taken = sorted(set(declared) & set(OWNED))
    if taken:
        name = taken[0]
        raise ConfigError(
            f"rxconfig.py: app_config({name}=...)",
            "is the runtime's to set",
            f"no {name} there ({OWNED[name]})",
        )
    # The Reflex version is pinned in uv.lock; nothing at build or run time asks PyPI for one.
    environment.REFLEX_CHECK_LATEST_VERSION.set(False)
    settings = from_environ()
    return rx.Config(
        **declared,
        app_name=_PACKAGE,
        telemetry_enabled=False,
        # The backend is served on the same port as the static frontend: one origin, one port.
        frontend_port=settings.port,
        backend_port=settings.port,
        api_url=f"http://localhost:{settings.port}",
        db_url=settings.database_url,
        redis_url=settings.redis_url,
        # Without Redis, state lives in memory: what must survive a restart is in the database.
        # Reflex's default, "disk", pickles every state change into the working directory,
        # costing CPU per event and leaving states that a deploy of changed state classes
        # could no longer read.
        state_manager_mode=(
            StateManagerMode.REDIS if settings.redis_url else StateManagerMode.MEMORY
        ),
        cors_allowed_origins=list(settings.allowed_origins),
    )


def load() -> rx.Config:
    """The app's Reflex config, read before anything waits or builds: an rxconfig.py that sets
    what the runtime owns, or that does not run at all, is one line and exit 2 at once, not a
    traceback after the database wait."""
    from reflex_base.config import get_config

    pin()
    try:
        return get_config()
    except WorkingError:
        raise
    except Exception as exc:
        detail = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise ConfigError(
            f"rxconfig.py{_line(exc)}",
            f"raised {type(exc).__name__}: {detail}",
            "a module that runs on its own (`uv run python rxconfig.py` shows the traceback)",
        ) from None


def _line(exc: Exception) -> str:
    """Where in rxconfig.py it failed: the innermost frame of that file, or the syntax error."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" line {exc.lineno}"
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).name == "rxconfig.py"
    ]
    return f" line {frames[-1].lineno}" if frames else ""


class _PinnedFinder(importlib.abc.MetaPathFinder):
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != _MODULE:
            return None
        return importlib.util.spec_from_file_location(_MODULE, self.origin)


def pin() -> None:
    """Idempotent; call before Reflex reads its config."""
    if any(isinstance(f, _PinnedFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _PinnedFinder(str(rxconfig_path())))


def rxconfig_path() -> Path:
    """The rxconfig.py beside this package: in site-packages for an installed wheel, the
    checkout's own for an editable install (not the copy the install left in site-packages)."""
    path = Path(__file__).parents[2] / f"{_MODULE}.py"
    if not path.is_file():
        raise WorkingError("rxconfig.py is not installed with the package; reinstall `working`")
    return path
