"""Reflex's configuration, and how Reflex finds it from any working directory.

Reflex imports its config as the top-level module `rxconfig`, searching the current directory
only, and re-imports it whenever an App is created. The image runs from its data directory, so
the rxconfig.py beside the package is pinned as the one answer to that import, and an editable
install pins the checkout's own: the copy such an install leaves in site-packages is never
refreshed, and once silently kept an old config serving.

Whatever that module builds, `app_config(...)` or the `rx.Config(...)` that `reflex init` writes,
the runtime applies what it owns to it on import: an app's unchanged rxconfig.py never bakes a
foreign URL, port or database into the bundle.
"""

from __future__ import annotations

import enum
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import traceback
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

import reflex as rx
from reflex_base.constants import StateManagerMode
from reflex_base.environment import environment

from . import security_headers
from .errors import ConfigError, WorkingError
from .masking import mask_url
from .settings import Settings, from_environ

_MODULE = "rxconfig"
_PACKAGE = "working"


# What the runtime decides, whatever rxconfig.py says: one port for everything, the database
# and Redis from the environment, state kept where the runtime can drain and expire it. Each
# field names what to set instead; rxconfig.py (either form) or a REFLEX_* variable setting one
# of them to another value gets one [WARN] line and the runtime's value.
OWNED = {
    "frontend_port": "set PORT",
    "backend_port": "set PORT",
    "api_url": "nothing to set, the bundle calls the origin it was loaded from",
    "deploy_url": "nothing to set, the bundle calls the origin it was loaded from",
    "db_url": "set DATABASE_URL, or leave it unset for a SQLite file in DATA_DIR",
    "redis_url": "set REDIS_URL",
    "state_manager_mode": "set REDIS_URL for Redis, or leave it unset for memory",
    "cors_allowed_origins": "set ALLOWED_ORIGINS",
    "telemetry_enabled": "nothing to set, the runtime never sends telemetry",
}
_URL_FIELDS = {"db_url", "redis_url"}
_warned: set[tuple[str, str]] = set()
# Its own name, so that the build's child process (frontend.py) can leave these to its parent.
log = logging.getLogger("working.rxconfig")


def app_config(**declared: Any) -> rx.Config:
    """Reflex's config for rxconfig.py: what the app declares (plugins, theme, ...), with what
    the runtime owns applied; the app is `working/working.py` unless it names another.
    A plain `rx.Config(...)` is treated the same way on import."""
    return effective(rx.Config(**{"app_name": _PACKAGE, **declared}))


def effective(config: rx.Config) -> rx.Config:
    """The config the runtime serves: the app's, with each field of OWNED set from the typed
    settings. A field the app (or a REFLEX_* variable) set to another value is named once."""
    # The Reflex version is pinned in uv.lock; nothing at build or run time asks PyPI for one.
    environment.REFLEX_CHECK_LATEST_VERSION.set(False)
    security_headers.declared_sources(config)  # a bad declaration stops here, before any wait
    runtime = _runtime_values(from_environ())
    declared: set[str] = getattr(config, "_non_default_attributes", set())
    for name, value in runtime.items():
        current = getattr(config, name, None)
        if name in declared and _normal(current) != _normal(value):
            _warn_overridden(name, current)
        setattr(config, name, value)
    return config


def _runtime_values(settings: Settings) -> dict[str, Any]:
    # The backend is served on the same port as the static frontend: one origin, one port.
    # Reflex's state.js swaps a localhost API URL for the page's own host (getBackendURL), so
    # localhost here is what makes the bundle call its own origin.
    own_origin = f"http://localhost:{settings.port}"
    return {
        "telemetry_enabled": False,
        "frontend_port": settings.port,
        "backend_port": settings.port,
        "api_url": own_origin,
        "deploy_url": own_origin,
        "db_url": settings.database_url,
        "redis_url": settings.redis_url,
        # Without Redis, state lives in memory: what must survive a restart is in the database.
        # Reflex's default, "disk", pickles every state change into the working directory,
        # costing CPU per event and leaving states that a deploy of changed state classes
        # could no longer read.
        "state_manager_mode": (
            StateManagerMode.REDIS if settings.redis_url else StateManagerMode.MEMORY
        ),
        "cors_allowed_origins": list(settings.allowed_origins),
    }


def _warn_overridden(name: str, value: object) -> None:
    shown = mask_url(str(value)) if name in _URL_FIELDS and value else repr(_normal(value))
    source = f"REFLEX_{name.upper()}" if os.environ.get(f"REFLEX_{name.upper()}") else "rxconfig.py"
    if (name, shown) in _warned:
        return
    _warned.add((name, shown))
    log.warning("%s sets %s=%s; ignored, the runtime owns it: %s", source, name, shown, OWNED[name])


def _normal(value: object) -> object:
    """Compare enum members by value and sequences as lists: 'memory' is StateManagerMode.MEMORY."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


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
        return importlib.util.spec_from_file_location(
            _MODULE, self.origin, loader=_RuntimeConfigLoader(_MODULE, self.origin)
        )


class _RuntimeConfigLoader(importlib.machinery.SourceFileLoader):
    """Runs rxconfig.py, then makes its `config` the effective one. Reflex re-imports the module
    (whenever an App is created), and each import passes through here, so however the file
    builds its config (app_config(...) or a plain rx.Config(...)), Reflex only ever sees it with
    the runtime's fields applied."""

    def exec_module(self, module: ModuleType) -> None:
        super().exec_module(module)
        config = getattr(module, "config", None)
        if not isinstance(config, rx.Config):
            raise ConfigError(
                "rxconfig.py",
                f"defines no Reflex config (config is {type(config).__name__})",
                "config = rx.Config(...) or config = app_config(...)",
            )
        setattr(module, "config", effective(config))  # noqa: B010 (a module, not typed)


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
