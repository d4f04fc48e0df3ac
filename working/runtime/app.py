"""The seam: the one place where the runtime reaches the app.

The app is the module its rxconfig.py names, as Reflex finds it: `<app_name>/<app_name>.py`
(the demo's `working/working.py`, or any package of the app's own, `app_module_import` if set),
defining `app = rx.App(...)`: its pages, state, event handlers, lifespan tasks, and HTTP
additions through `api_transformer`. Beside this package, in `working/`:
- `migrations/` is the app's Alembic history (env.py hands its metadata to
  `migrations.run_env`), applied by the runtime at start;
- `settings.toml` declares the app's own environment variables (app_settings.py).
`rxconfig.py` beside the package is the app's Reflex config (reflex_config.py), and `assets/`
beside it holds its static files (as in any Reflex project).
Nothing else under working/runtime/ imports the app (tests/test_layout.py checks the import graph),
so an app of your own replaces those files and nothing here; see docs/your-app.md.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .contract import contract
from .errors import ConfigError, WorkingError

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


def module_name() -> str:
    """The app's module, from its rxconfig.py: `working.working` for the demo."""
    from .reflex_config import load as load_config
    from .reflex_config import rxconfig_path

    name: str = load_config().module
    package = name.partition(".")[0]
    _check_shipped(package, rxconfig_path().parent / "pyproject.toml")
    if importlib.util.find_spec(package) is None:
        raise _missing(name)
    return name


def _missing(name: str) -> ConfigError:
    return ConfigError(
        f"rxconfig.py names the app {name!r}",
        f"but there is no {name.replace('.', '/')}.py",
        "the app's package beside rxconfig.py, installed with the runtime (pyproject.toml, "
        "[tool.hatch.build.targets.wheel] packages)",
    )


def _check_shipped(package: str, pyproject: Path) -> None:
    """In a checkout, the wheel (and so the image) must hold the app's package: an app renamed
    in rxconfig.py but not in pyproject.toml would build here and be missing from the image."""
    if not pyproject.is_file():
        return  # an installed wheel: what it holds is what was built
    import tomllib

    wheel = tomllib.loads(pyproject.read_text()).get("tool", {}).get("hatch", {})
    packages = wheel.get("build", {}).get("targets", {}).get("wheel", {}).get("packages")
    if packages is None or package in {Path(p).name for p in packages}:
        return
    raise ConfigError(
        "pyproject.toml: [tool.hatch.build.targets.wheel] packages",
        f"is {packages}, without the app's package {package!r} (rxconfig.py's app_name)",
        f"{[*packages, package]}, so that the wheel and the image hold the app",
    )


def load() -> rx.App:
    """The app's `rx.App`; importing it builds its pages and state classes."""
    import reflex as rx

    _run_deferred_package_init()
    name = module_name()
    shown = name.replace(".", "/") + ".py"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not name.startswith(exc.name):
            raise  # the app's own import of something else: its traceback is the app's
        raise _missing(name) from None
    app = getattr(module, "app", None)
    if not isinstance(app, rx.App):
        raise WorkingError(f"{shown} must define `app = rx.App(...)`, not a {type(app).__name__}")
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


def dynamic_routes(app: rx.App) -> tuple[str, ...]:
    """The app's routes with arguments (`item/[item_id]`), which the export has no page for."""
    return tuple(sorted(route for route in app._unevaluated_pages if "[" in route))


def uses_dynamic_components(app: rx.App) -> bool:
    """Whether a state var of the app is an `rx.Component`, which the browser evaluates as a
    `data:` module (the page's policy must allow that, and only then)."""
    from reflex.state import BaseState
    from reflex_base.components.component import BaseComponent

    def states(cls: type[BaseState]) -> Iterator[type[BaseState]]:
        yield cls
        for sub in cls.get_substates():
            yield from states(sub)

    root = app._state
    return root is not None and any(
        isinstance(var._var_type, type) and issubclass(var._var_type, BaseComponent)
        for state in states(root)
        for var in state.vars.values()
    )


def shadowed_pages(app: rx.App) -> list[str]:
    """One line for each page of the app at a reserved path: such a page is never shown."""
    pages = {"/" + route.strip("/") for route in app._unevaluated_pages}
    return [
        f"the app's page at {route} is shadowed: {route} is the runtime's own endpoint; "
        "move the page to another route"
        for route in sorted(pages & reserved_paths())
    ]
