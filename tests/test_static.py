"""The export served by route: a dynamic route of the app answers with the SPA shell, 200.

Driven through a real uvicorn server over a socket; the browser side is in
test_plain_reflex_app.py (a direct load of /item/42 renders the page, no console error).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from services import free_port
from working.runtime.static import FrontendFiles


def _export(root: Path) -> Path:
    for name, body in {
        "index.html": "<html>home</html>",
        "404.html": "<html>not found</html>",
        "__spa-fallback.html": "<html>shell</html>",
        "about.html": "<html>about</html>",
    }.items():
        (root / name).write_text(body)
    (root / "assets").mkdir()
    return root


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    files = FrontendFiles(
        _export(tmp_path),
        dynamic=("item/[item_id]", "docs/[...path]", "blog/[[...slug]]"),
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(files, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/", 200, "home"),
        ("/about", 200, "about"),
        ("/item/42", 200, "shell"),
        ("/item/42/", 200, "shell"),
        ("/item/42/more", 404, "not found"),
        ("/item", 404, "not found"),
        ("/docs/a/b/c", 200, "shell"),
        ("/docs", 404, "not found"),
        ("/blog", 200, "shell"),
        ("/blog/2026/12", 200, "shell"),
        ("/nowhere", 404, "not found"),
    ],
)
def test_dynamic_routes_get_the_shell_and_the_rest_404(
    url: str, path: str, status: int, body: str
) -> None:
    answer = httpx.get(url + path, timeout=5)
    assert (answer.status_code, body in answer.text) == (status, True)
