"""Make Reflex find this package's rxconfig from any working directory.

Reflex imports its config as the top-level module `rxconfig`, searching the current directory
only, and re-imports it whenever an App is created. The image runs from its data directory, so
the rxconfig installed with the package is pinned as the one answer to that import.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

from .errors import WorkingError

_MODULE = "rxconfig"


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
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or spec.origin is None:
        raise WorkingError("rxconfig.py is not installed with the package; reinstall `working`")
    sys.meta_path.insert(0, _PinnedFinder(spec.origin))
