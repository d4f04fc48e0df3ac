"""The seam: the one place where the runtime reaches the app.

The app is the rest of the `working` package, found where Reflex looks for it:
- `working/working.py` defines `app = rx.App(...)`: its pages, state, event handlers, lifespan
  tasks, and HTTP additions through `api_transformer`;
- `working/migrations/` is its Alembic history (env.py hands its metadata to
  `migrations.run_env`), applied by the runtime at start;
- `rxconfig.py` beside the package declares its Reflex plugins and theme (reflex_config.app_config),
  and `assets/` beside it holds its static files (as in any Reflex project).
Nothing else under working/runtime/ imports the app (tests/test_layout.py checks the import graph),
so an app of your own replaces those files and nothing here; see docs/your-app.md.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .contract import contract
from .errors import WorkingError

if TYPE_CHECKING:
    import reflex as rx

PACKAGE = "working"
MIGRATIONS = resources.files(PACKAGE) / "migrations"


def assets_dir() -> Path:
    """The app's static files (Reflex's `assets/`), copied into the export by the build.

    Beside rxconfig.py in a checkout; an installed wheel has none there, and then the build
    runs from the source tree (the Nix frontend derivation does), where Reflex looks: `./assets`.
    """
    from .reflex_config import rxconfig_path

    beside = rxconfig_path().parent / "assets"
    return beside if beside.is_dir() else Path.cwd() / "assets"


def load() -> rx.App:
    """The app's `rx.App`; importing it builds its pages and state classes."""
    import reflex as rx

    _run_deferred_package_init()
    from working.working import app

    if not isinstance(app, rx.App):
        raise WorkingError(
            f"working/working.py must define `app = rx.App(...)`, not a {type(app).__name__}"
        )
    return app


def _run_deferred_package_init() -> None:
    """The package's `__init__.py`, which the entrypoint (working_entrypoint.py) leaves until
    the runtime has configured Reflex: run here, once, before the app is imported."""
    package = sys.modules.get(PACKAGE)
    if package is None or not getattr(package, "__deferred_init__", False):
        return
    del package.__deferred_init__
    spec = package.__spec__
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(package)


def reserved_paths() -> frozenset[str]:
    """The paths the runtime answers itself, whatever pages the app has: /health and /livez."""
    http = contract()["http"]
    return frozenset({http["health_path"], http["liveness_path"]})


def shadowed_pages(app: rx.App) -> list[str]:
    """One line for each page of the app at a reserved path: such a page is never shown."""
    pages = {"/" + route.strip("/") for route in app._unevaluated_pages}
    return [
        f"the app's page at {route} is shadowed: {route} is the runtime's own endpoint; "
        "move the page to another route"
        for route in sorted(pages & reserved_paths())
    ]
