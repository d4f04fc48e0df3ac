"""Build the static frontend export: compile the Reflex app, then `react-router build`.

One function used by everyone: the Nix derivation, the tests and `working serve` on a fresh
machine. It writes only to a private temporary directory and to `out`, so it runs from a
read-only source tree (the Nix store) with just a writable HOME and TMPDIR.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import FrontendError

# Reflex bakes an absolute backend URL into the bundle and, for localhost, swaps in the page's
# host name but keeps the baked port. The whole app is served from one origin, so the backend
# is always the page's own host and port: the same bundle works on any port and behind any
# HTTPS proxy.
_SAME_ORIGIN_PATCH = (
    (
        "    endpoint.hostname = frontend_hostname;\n",
        "    endpoint.host = window.location.host;\n",
    ),
    (
        '      endpoint.port = ""; // Assume websocket is on https port via load balancer.\n',
        "",
    ),
)


def build(out: Path, node_modules: Path | None) -> None:
    """Write the export to `out` (replaced as a whole, never left half-written)."""
    out = out.absolute()
    with tempfile.TemporaryDirectory(prefix="working-frontend-") as tmp:
        web = Path(tmp) / ".web"
        env = _build_environment(web)
        # A child process: compiling imports the whole component library, which a serving
        # process should not carry, and Reflex reads its settings from the environment.
        result = subprocess.run([sys.executable, "-m", __name__], env=env, cwd=tmp, check=False)
        if result.returncode != 0:
            raise FrontendError(
                f"frontend build failed (exit {result.returncode}); see the lines above"
            )
        export = web / "build" / "client"
        if not (export / "index.html").is_file():
            raise FrontendError(f"frontend build produced no {export}/index.html")
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(export, staging)
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)


def _build_environment(web: Path) -> dict[str, str]:
    return {
        **os.environ,
        "REFLEX_WEB_WORKDIR": str(web),
        "REFLEX_STATES_WORKDIR": str(web.parent / ".states"),
        "REFLEX_ENV_MODE": "prod",
        "REFLEX_USE_NPM": "true",
        "REFLEX_CHECK_LATEST_VERSION": "false",
        "REFLEX_TELEMETRY_ENABLED": "false",
        "NO_COLOR": "1",
    }


def _compile_and_export() -> None:
    """Runs in the child: Reflex's own steps, in the order `reflex export` takes them."""
    from reflex.utils import build, prerequisites
    from reflex.utils.frontend_skeleton import initialize_web_directory

    from . import reflex_config

    reflex_config.pin()

    initialize_web_directory()
    prerequisites.get_compiled_app(prerender_routes=True)
    build.setup_frontend(Path.cwd())
    _patch_same_origin(prerequisites.get_web_dir() / "utils" / "state.js")
    build.build()


def _patch_same_origin(state_js: Path) -> None:
    source = state_js.read_text()
    for old, new in _SAME_ORIGIN_PATCH:
        if old not in source:
            raise FrontendError(
                f"{state_js.name} no longer contains {old.strip()!r}: Reflex changed how it "
                "finds the backend; update _SAME_ORIGIN_PATCH in working/frontend.py"
            )
        source = source.replace(old, new)
    state_js.write_text(source)


if __name__ == "__main__":
    try:
        _compile_and_export()
    except FrontendError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        sys.exit(1)
