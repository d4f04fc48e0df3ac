"""The prebuilt frontend export, served by the same process as the backend."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

# Vite names every asset by its content hash, so a cached copy can never be stale.
_IMMUTABLE = "public, max-age=31536000, immutable"
# Pages name those assets: revalidate them, so a deploy is visible on the next load.
_REVALIDATE = "no-cache"


class FrontendFiles(StaticFiles):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, html=True, check_dir=True)

    async def get_response(self, path: str, scope: Scope) -> Response:
        # Reflex writes each page as both notes.html and notes/index.html: answering /notes
        # with the former saves the browser a redirect to /notes/.
        if path and "." not in path.rsplit("/", 1)[-1]:
            page = f"{path.rstrip('/')}.html"
            if self.lookup_path(page)[1] is not None:
                path = page
        response = await super().get_response(path, scope)
        immutable = path.startswith("assets/") and response.status_code == 200
        response.headers.setdefault("Cache-Control", _IMMUTABLE if immutable else _REVALIDATE)
        return response


def is_export(directory: Path) -> bool:
    """True when `directory` holds a frontend export (an index page and its assets)."""
    return (directory / "index.html").is_file() and (directory / "assets").is_dir()
