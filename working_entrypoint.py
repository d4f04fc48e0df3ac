"""The image's entrypoint and the `working` console script: the runtime's commands.

A top-level module, shipped in the wheel beside rxconfig.py, so that the runtime starts before
the app package's `__init__.py` runs. An app's package commonly imports its app there (`from
.working import app`): run first, it would make every command, the healthcheck Docker runs
every few seconds included, load Reflex and every page, and build the app before the runtime
has configured Reflex (its state manager, where its files go). The package is registered here
by its location only; the runtime runs its `__init__.py` when it loads the app
(working.runtime.app.load), and `healthcheck` never does.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

PACKAGE = "working"


def main(argv: Sequence[str] | None = None) -> int:
    _defer_package_init()
    from working.runtime.entrypoint import main as run

    return run(argv)


def _defer_package_init() -> None:
    """Subpackages (working.runtime) and modules import as usual; `__init__.py` waits."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        return  # not installed: the import in main says so
    package = importlib.util.module_from_spec(spec)
    package.__deferred_init__ = True  # type: ignore[attr-defined]
    sys.modules[PACKAGE] = package


if __name__ == "__main__":
    sys.exit(main())
