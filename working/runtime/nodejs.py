"""Node.js and npm, checked before a frontend build asks Reflex for them.

Without this, a machine with no Node (or an old one) ends the first `working serve` in Reflex's
own traceback (`FileNotFoundError: Bun or npm not found`). Here it is one line that names what
is missing and both ways out. The minimum is Reflex's own constant, so it moves with Reflex.

The exit code is the contract's `dependency` (3), not `config` (2): every setting is valid, what
is missing is a program outside the app that the build depends on, as an unreachable database
is; the fix is to install it (or to not need it, with FRONTEND_DIR).
"""

from __future__ import annotations

import re
import shutil
import subprocess

from .errors import DependencyError

_WAYS_OUT = (
    "install Node.js {minimum} or newer with npm (e.g. Node 20 LTS), "
    "or set FRONTEND_DIR to a prebuilt export (e.g. the result of `nix build .#frontend`)"
)


def minimum_version() -> tuple[int, ...]:
    """The oldest Node.js the installed Reflex supports (20.19.0 for Reflex 0.9.2)."""
    from reflex_base.constants.installer import Node

    return _parse(Node.MIN_VERSION)


def require_node_and_npm() -> None:
    """Raise one DependencyError line unless node (recent enough) and npm are on PATH."""
    minimum = minimum_version()
    ways_out = _ways_out()
    missing = [name for name in ("node", "npm") if shutil.which(name) is None]
    if missing:
        raise DependencyError(
            f"building the frontend needs Node.js and npm, but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not on PATH; {ways_out}"
        )
    node = program("node")
    found = _node_version(node)
    if found is None:
        raise DependencyError(f"{node} --version did not print a Node.js version; {ways_out}")
    if found < minimum:
        raise DependencyError(
            f"Node.js {_text(found)} at {node} is older than {_text(minimum)}, the oldest the "
            f"installed Reflex supports; {ways_out}"
        )


def program(name: str) -> str:
    """The path of `node` or `npm` on PATH, or one DependencyError line naming the ways out."""
    path = shutil.which(name)
    if path is None:
        raise DependencyError(
            f"building the frontend needs Node.js and npm, but {name} is not on PATH; {_ways_out()}"
        )
    return path


def _ways_out() -> str:
    return _WAYS_OUT.format(minimum=_text(minimum_version()))


def _node_version(node: str) -> tuple[int, ...] | None:
    try:
        result = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)\S*", result.stdout.strip())
    return tuple(int(part) for part in match.groups()) if match else None


def _parse(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3])


def _text(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)
