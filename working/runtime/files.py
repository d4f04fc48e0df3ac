"""Where Reflex keeps files in the runtime's processes: uploads on the data volume, nothing in
the working directory.

The image's root is read-only and its working directory is the data volume, where only the
app's data belongs; a checkout's working directory is the user's source tree. Plain Reflex
writes into `./uploaded_files`, `./.web/backend` (its page and upload markers) and, for each
`rx.asset(shared=True)`, a symlink under `./assets/external`; here none of those is written.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

UPLOADS = "uploaded_files"


def place(data_dir: Path) -> Path:
    """Point Reflex at DATA_DIR for uploads and away from the working directory; returns the
    upload directory (`rx.get_upload_dir()`, what the `/_upload` endpoint serves)."""
    from reflex_base.environment import environment

    uploads = (data_dir / UPLOADS).resolve()
    # reflex_components_core.core.upload.get_upload_dir reads it on every call.
    environment.REFLEX_UPLOADED_FILES_DIR.set(uploads)
    # What `reflex run --backend-only` sets: the frontend is built already, so rx.asset
    # (reflex/assets.py) links no shared asset into ./assets/external and looks for no local
    # one in ./assets; the export holds both.
    environment.REFLEX_BACKEND_ONLY.set(True)
    # Reflex's markers (reflex/app.py: stateful_pages.json, upload_is_used) go to a directory
    # of this process's own: one left on the volume by an earlier image would be stale.
    scratch = Path(tempfile.mkdtemp(prefix="working-reflex-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    environment.REFLEX_WEB_WORKDIR.set(scratch)
    return uploads
