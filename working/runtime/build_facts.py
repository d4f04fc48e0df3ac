"""What compiling the app taught Reflex that its backend needs, carried from the build to the
serving process in the export, so that the serving process never compiles.

Plain Reflex learns these by compiling in the serving process (reflex 0.9.2,
reflex/compiler/compiler.py `compile_app`, reflex/app.py `_add_optional_endpoints`):

- the libraries the bundle holds (`window.__reflex`): a dynamic component imports them from the
  bundle; without them its `@radix-ui/themes` import becomes cdn.jsdelivr.net, which the page's
  policy refuses (and an offline network cannot reach), and the component never renders;
- the pages whose evaluation makes state classes (an `rx.ComponentState`), which Reflex keeps in
  `.web/backend/stateful_pages.json`: with that file, its backend evaluates only those pages,
  and without it every page, importing every component module they use (what
  `reflex run --backend-only` after a build does);
- whether a page has an upload (`.web/backend/upload_is_used`): only then is `/_upload` routed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import FrontendError

MANIFEST = "reflex-build.json"
_STATEFUL_PAGES = "stateful_pages.json"  # reflex_base.constants.Dirs.STATEFUL_PAGES
_UPLOAD_IS_USED = "upload_is_used"  # reflex_base.constants.Dirs.UPLOAD_IS_USED
_KEYS = {"bundled_libraries", "stateful_pages", "upload_is_used"}


def write(web: Path, export: Path) -> None:
    """In the build, after compiling: what the compile left in `web` goes into the export."""
    from reflex_base.components.dynamic import bundled_libraries

    backend = web / "backend"
    stateful = backend / _STATEFUL_PAGES
    facts = {
        "bundled_libraries": list(dict.fromkeys(bundled_libraries)),
        # Reflex writes none for an app without state: then the backend evaluates every page.
        "stateful_pages": json.loads(stateful.read_text()) if stateful.is_file() else None,
        "upload_is_used": (backend / _UPLOAD_IS_USED).exists(),
    }
    (export / MANIFEST).write_text(json.dumps(facts))


def apply(export: Path) -> None:
    """In the serving process, before the app is built: tell Reflex what the build learned.

    An export without the manifest (built by an older runtime) leaves Reflex's defaults: it
    then evaluates every page, as before."""
    from reflex.utils.prerequisites import get_backend_dir
    from reflex_base.components.dynamic import bundled_libraries

    facts = _read(export / MANIFEST)
    if facts is None:
        return
    bundled_libraries[:] = list(dict.fromkeys([*bundled_libraries, *facts["bundled_libraries"]]))
    backend = get_backend_dir()
    backend.mkdir(parents=True, exist_ok=True)
    if facts["stateful_pages"] is not None:
        (backend / _STATEFUL_PAGES).write_text(json.dumps(facts["stateful_pages"]))
    if facts["upload_is_used"]:
        (backend / _UPLOAD_IS_USED).touch()


def _read(manifest: Path) -> dict[str, Any] | None:
    if not manifest.is_file():
        return None
    try:
        facts = json.loads(manifest.read_text())
    except ValueError:
        facts = None
    if isinstance(facts, dict) and facts.keys() >= _KEYS:
        return facts
    raise FrontendError(
        f"{manifest} is not a build manifest this runtime reads; rebuild the frontend "
        "(working build-frontend) with this version of the runtime"
    )
