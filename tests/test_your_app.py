"""A second app, proven: tests/apps/tailnotes (Tailwind v4, no Radix, its own table and lock)
built and served by the same runtime, with none of the demo's modules beside it.

The tree under test is the fixture app plus a byte-for-byte copy of working/runtime/, put first
on PYTHONPATH: `working` is the fixture's package there, so anything of the demo's that the
runtime still reached would fail to import.

The fixture's npm lock is refreshed the way the demo's is, by the runtime, in that tree:
    uv run python tests/test_your_app.py lock
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services import REPO, Server, base_env, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.network]

APP = REPO / "tests" / "apps" / "tailnotes"
LOCK = APP / "frontend"
# An arbitrary value: only Tailwind compiling the page's classes turns it into CSS.
BANNER_BACKGROUND = "rgb(15, 118, 110)"  # bg-[#0f766e]
BANNER_PADDING = "24px"  # p-6: Tailwind v4's theme spacing (0.25rem) times 6
# The fixture's own setting (tests/apps/tailnotes/working/settings.toml), set at serve time only.
TITLE = "The Analytical Guestbook"


def assemble(root: Path) -> Path:
    """The fixture app with the runtime copied into it, and nothing of the demo."""
    tree = root / "tailnotes"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(APP, tree, ignore=skip)
    shutil.copytree(REPO / "working" / "runtime", tree / "working" / "runtime", ignore=skip)
    return tree


def runtime(*args: str) -> list[str]:
    return [sys.executable, "-m", "working.runtime.entrypoint", *args]


@dataclass
class Built:
    tree: Path
    export: Path
    output: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    tree = assemble(tmp_path_factory.mktemp("app"))
    export = tree / "export"
    # node_modules come from the fixture's own lock (npm ci into the user's cache, once per
    # lock), as `build-frontend` does by default.
    result = subprocess.run(
        runtime("build-frontend", "--out", str(export), "--lock", str(tree / "frontend")),
        cwd=tree,
        env=base_env(PYTHONPATH=str(tree)),
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return Built(tree, export, output)


def test_the_fixture_differs_from_the_demo() -> None:
    """Its own lock: Tailwind v4 (what TailwindV4Plugin asks for), no Radix Themes."""
    packages = json.loads((LOCK / "package-lock.json").read_text())["packages"]
    assert packages["node_modules/tailwindcss"]["version"].startswith("4.")
    assert "node_modules/@tailwindcss/postcss" in packages
    assert "node_modules/@radix-ui/themes" not in packages
    demo = json.loads((REPO / "nix" / "frontend" / "package-lock.json").read_text())["packages"]
    assert "node_modules/tailwindcss" not in demo
    names = {p.name for p in (APP / "working").glob("*.py")}
    assert names.isdisjoint({"auth.py", "notes.py", "login.py", "session_cookie.py"})


@pytest.mark.timeout(900)
def test_built_served_and_driven_in_a_browser(built: Built, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # The app's own /health page is shadowed by the runtime's, and the build says so.
    assert any(
        "/health" in line and "shadow" in line.lower() for line in built.output.splitlines()
    ), built.output
    assert (built.export / "index.html").is_file()

    data = tmp_path / "data"
    port = free_port()
    env = base_env(
        PYTHONPATH=str(built.tree),
        PORT=str(port),
        DATA_DIR=str(data),
        FRONTEND_DIR=str(built.export),
        GUESTBOOK_TITLE=TITLE,
    )
    server = Server(env, port, cwd=built.tree, command=runtime("serve")).start()
    try:
        _wait_alive(server)
        _check(server, built, data, browser)
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output
    finally:
        server.stop()


def _wait_alive(server: Server, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            raise AssertionError(f"server exited {server.process.returncode}:\n{server.output}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/livez", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"/livez not 200 after {timeout}s:\n{server.output}")


def _check(server: Server, built: Built, data: Path, browser) -> None:  # type: ignore[no-untyped-def]
    # /health is the runtime's JSON, whatever the client asks for.
    health = httpx.get(f"{server.url}/health", headers={"accept": "text/html"}, timeout=10)
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "healthy"
    assert body["database"]["status"] == "connected"
    assert body["database"]["backend"] == "sqlite"
    assert "The guestbook is fine." not in health.text
    # Also with a trailing slash, where the export has the app's page as health/index.html.
    slash = httpx.get(f"{server.url}/health/", follow_redirects=True, timeout=10)
    assert "The guestbook is fine." not in slash.text
    # The app's assets/ (beside its rxconfig.py, as in any Reflex project) are in the export.
    about = httpx.get(f"{server.url}/about.txt", timeout=10)
    assert about.status_code == 200
    assert about.text == (APP / "assets" / "about.txt").read_text()
    assert "migrations: applied" in server.output, server.output
    assert any("/health" in line and "shadow" in line.lower() for line in server.lines)

    page = browser.new_page()
    with page.expect_websocket(lambda ws: "/_event" in ws.url) as opened:
        page.goto(f"{server.url}/")
    socket = opened.value
    page.locator("#entry-count").filter(has_text="0 entries").wait_for()
    # The app's own setting, from the serving process's environment: the export has the default.
    page.locator("#title").filter(has_text=TITLE).wait_for()
    assert TITLE not in (built.export / "index.html").read_text()

    # Tailwind was compiled into the export: utilities apply.
    banner = page.locator("#banner")
    style = banner.evaluate(
        "e => { const s = getComputedStyle(e); return [s.backgroundColor, s.paddingTop]; }"
    )
    assert style == [BANNER_BACKGROUND, BANNER_PADDING]

    page.locator("#name").fill("Ada")
    page.locator("#message").fill("hello from chromium")
    # The submit goes out over /_event; the new entry comes back as a state update on it.
    with socket.expect_event("framereceived", lambda f: "hello from chromium" in str(f)):
        page.locator("#sign").click()
    page.locator(".entry").filter(has_text="hello from chromium").wait_for()
    page.locator("#entry-count").filter(has_text="1 entry").wait_for()
    assert page.locator(".entry-name").all_inner_texts() == ["Ada"]
    page.close()

    with contextlib.closing(sqlite3.connect(data / "working.db")) as conn:
        rows = conn.execute("SELECT name, message FROM guestbook_entries").fetchall()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert rows == [("Ada", "hello from chromium")]
    assert "accounts" not in tables  # the demo's migrations never ran here


def refresh_lock() -> None:
    """Regenerate tests/apps/tailnotes/frontend with the runtime's own `lock-frontend`."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tailnotes-lock-") as tmp:
        tree = assemble(Path(tmp))
        subprocess.run(
            runtime("lock-frontend", "--lock", str(tree / "frontend")),
            cwd=tree,
            env=base_env(PYTHONPATH=str(tree)),
            check=True,
        )
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(tree / "frontend" / name, LOCK / name)


if __name__ == "__main__":
    if sys.argv[1:] != ["lock"]:
        sys.exit(f"usage: {sys.argv[0]} lock")
    refresh_lock()
