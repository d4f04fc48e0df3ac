"""An app written the ordinary Reflex way, unchanged: tests/apps/plainreflex.

Its package keeps its own name (plainreflex/plainreflex.py); its rxconfig.py is a plain
`rx.Config` with its own ports, the domain it was served on and its
database file; it loads an external stylesheet (`rx.App(stylesheets=[...])`, here from a second
local origin), renders a dynamic component (a computed var returning `rx.Component`), and keeps
a guestbook in an `rx.Model` through `rx.session()`, with the Alembic history `reflex db init`
and `reflex db makemigrations` wrote (alembic.ini, alembic/). Built and served by the runtime
after the one documented step (`working adopt-migrations`), it must work in Chromium with no
CSP violation and no console error, its bundle calling its own origin; on plain `reflex run
--env prod` the same app is the control.
"""

from __future__ import annotations

import contextlib
import http.server
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services import REPO, Server, base_env, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.network]

APP = REPO / "tests" / "apps" / "plainreflex"
# The app's own lock is the demo's: it uses Radix Themes and nothing else from npm.
LOCK = REPO / "nix" / "frontend"
STYLED_COLOR = "rgb(1, 2, 3)"
# The one revision `reflex db makemigrations` wrote for its rx.Model.
REVISION = next(p.name for p in (APP / "alembic" / "versions").glob("*.py"))
_RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.effectiveDirective} ${e.blockedURI}`);
});
"""


@pytest.fixture(scope="module")
def stylesheet_origin() -> Iterator[str]:
    """A second origin serving the app's "web font" stylesheet, as a CDN would."""
    css = f"#styled {{ color: {STYLED_COLOR}; }}\n".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/css")
            self.send_header("content-length", str(len(css)))
            self.end_headers()
            self.wfile.write(css)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app as the user has it, plus the runtime copied in beside its package."""
    return _assemble(tmp_path_factory.mktemp("plainreflex") / "app")


def _assemble(root: Path) -> Path:
    # Its own package, plainreflex/, beside the runtime's: nothing renamed, the demo absent.
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(APP, root, ignore=skip)
    shutil.copytree(REPO / "working" / "runtime", root / "working" / "runtime", ignore=skip)
    (root / "working" / "__init__.py").write_text("")
    return root


def _runtime(*args: str) -> list[str]:
    return [sys.executable, "-m", "working.runtime.entrypoint", *args]


@pytest.mark.timeout(900)
def test_on_the_runtime_unchanged(
    browser, tree: Path, stylesheet_origin: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    stylesheet = f"{stylesheet_origin}/fonts.css"
    export = tmp_path / "export"
    env = base_env(PYTHONPATH=str(tree), DATA_DIR=str(tmp_path / "data"))
    port = free_port()
    serve_env = env | {"PORT": str(port), "FRONTEND_DIR": str(export)}
    build = ("build-frontend", "--out", str(export), "--lock", str(LOCK))
    # Its Reflex-style history is not in the package the image holds: one line, before any
    # table is missing at run time, and before a build that would prerender without it.
    for command in (("serve",), build):
        refused = subprocess.run(
            _runtime(*command), cwd=tree, env=serve_env, capture_output=True, text=True, timeout=120
        )
        said = refused.stdout + refused.stderr
        assert refused.returncode == 2, said
        assert [line for line in said.splitlines() if line.startswith("[ERROR]")] == [
            "[ERROR] alembic.ini and 1 revision(s) in alembic/versions are a Reflex-style "
            "Alembic history, which the image does not hold; expected the history in "
            "working/migrations/: run `uv run working adopt-migrations` once and commit the "
            "result (docs/your-app.md, section 6)"
        ], said
        assert "Traceback" not in said
    adopted = subprocess.run(
        _runtime("adopt-migrations"), cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert (tree / "working" / "migrations" / "versions" / REVISION).is_file()
    assert not (tree / "alembic.ini").exists()

    built = subprocess.run(
        _runtime(*build),
        cwd=tree,
        # A deployment's database in the build's environment is never what the build reads.
        env=env
        | {"PLAINREFLEX_STYLESHEET": stylesheet, "DATABASE_URL": "postgresql://u:p@127.0.0.1:9/x"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = built.stdout + built.stderr
    assert built.returncode == 0, output
    # Each field the runtime overrides is named once, with what to set instead.
    assert "[WARN] rxconfig.py sets api_url='https://www.example.com'; ignored" in output
    assert "[WARN] rxconfig.py sets backend_port=8000; ignored" in output
    assert "[WARN] rxconfig.py sets db_url=sqlite:///reflex.db; ignored" in output
    assert output.count("sets api_url=") == 1, output
    assert not [p for p in export.rglob("*") if p.is_file() and b"example.com" in p.read_bytes()]
    # The computed var that queries the database was prerendered from the build's own
    # scratch database, at the app's head: empty tables, not an error.
    assert "0 signed" in (export / "index.html").read_text()

    server = Server(serve_env, port, cwd=tree, command=_runtime("serve")).start()
    try:
        _wait(f"{server.url}/livez", server)
        assert f"migrations: applied empty -> {REVISION.split('_')[0]}" in server.output
        # The start says what the policy allows beyond its base, and why.
        assert any(
            "content security policy:" in line
            and f"style-src {stylesheet_origin}" in line
            and "script-src data:" in line
            for line in server.lines
        ), server.output
        csp = httpx.get(f"{server.url}/", timeout=10).headers["content-security-policy"]
        assert "object-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
        _drive(browser, server)
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output
    finally:
        server.stop()
    # rx.session() used the runtime's engine: Reflex's "run reflex db init" never applied.
    assert "reflex db init" not in server.output
    with sqlite3.connect(tmp_path / "data" / "working.db") as conn:
        assert conn.execute("SELECT text FROM entry").fetchall() == [("signed in Chromium",)]


@pytest.mark.timeout(900)
def test_on_plain_reflex_the_control(
    browser, tree: Path, stylesheet_origin: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The same app on `reflex run --env prod`, as its user ran it before: the app works there
    too, so what the runtime test sees is the runtime's doing, not the app's."""
    plain = tmp_path / "plain"
    # The app as its user has it (the runtime test adopts its history in its own tree).
    shutil.copytree(APP, plain, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    env = base_env(
        PORT=str(port),
        PLAINREFLEX_STYLESHEET=f"{stylesheet_origin}/fonts.css",
        REFLEX_USE_NPM="1",
        REFLEX_CHECK_LATEST_VERSION="false",
        REFLEX_TELEMETRY_ENABLED="false",
        # Its rxconfig.py names its production domain and two ports; on this machine the
        # control is given the local ones the way Reflex reads them, from the environment
        # (Reflex 0.9.2's prod mode serves both on one port).
        REFLEX_API_URL=f"http://localhost:{port}",
        REFLEX_FRONTEND_PORT=str(port),
        REFLEX_BACKEND_PORT=str(port),
        REFLEX_DB_URL=f"sqlite:///{tmp_path / 'reflex.db'}",
    )
    env.pop("PYTHONPATH", None)
    reflex = Path(sys.executable).with_name("reflex")
    migrated = subprocess.run(
        [str(reflex), "db", "migrate"],
        cwd=plain,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    server = Server(env, port, cwd=plain, command=[str(reflex), "run", "--env", "prod"]).start()
    try:
        _wait(f"{server.url}/ping", server, timeout=600)
        _wait(f"{server.url}/", server, timeout=120)
        _drive(browser, server)
    finally:
        server.stop()


def _drive(browser, server: Server) -> None:  # type: ignore[no-untyped-def]
    try:
        _use(browser, server.url)
    except Exception as exc:
        raise AssertionError(f"{exc}\n--- the server said:\n{server.output[-6000:]}") from exc


def _use(browser, url: str) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    context.add_init_script(_RECORD_VIOLATIONS)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        with page.expect_websocket(lambda ws: "/_event" in ws.url) as opened:
            page.goto(f"{url}/")
        # Its own origin, whatever host the page was loaded from.
        own = url.replace("http://", "ws://", 1)
        assert opened.value.url.startswith(f"{own}/_event"), opened.value.url
        page.locator("#badge").filter(has_text="clicked 0 times").wait_for(timeout=30_000)
        page.locator("#click").click()
        page.locator("#count").filter(has_text="1").wait_for(timeout=10_000)
        badge = page.locator("#badge").filter(has_text="clicked 1 times")
        with contextlib.suppress(Exception):
            badge.wait_for(timeout=10_000)
        seen = (page.evaluate("window.__violations"), errors, page.content()[-3000:])
        assert badge.is_visible(), seen
        page.locator("#entry-text").fill("signed in Chromium")
        page.locator("#entry-submit").click()
        page.locator(".entry").filter(has_text="signed in Chromium").wait_for(timeout=10_000)
        page.locator("#signed").filter(has_text="1 signed").wait_for(timeout=10_000)
        page.reload()
        page.locator(".entry").filter(has_text="signed in Chromium").wait_for(timeout=30_000)
        color = page.eval_on_selector("#styled", "e => getComputedStyle(e).color")
        assert color == STYLED_COLOR, "the external stylesheet was not applied"
        assert page.evaluate("window.__violations") == []
        assert errors == []
    finally:
        context.close()


def _wait(url: str, server: Server, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            raise AssertionError(f"exited {server.process.returncode}:\n{server.output}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} not 200 after {timeout}s:\n{server.output}")


def test_new_migration_on_the_adopted_history_writes_what_migrate_applies(tmp_path: Path) -> None:
    """A field added to the app's rx.Model: the revision imports sqlmodel (its str columns are
    sqlmodel's AutoString), as `reflex db makemigrations` makes it, and the runtime applies it."""
    root = _assemble(tmp_path / "app")
    env = base_env(PYTHONPATH=str(root), DATA_DIR=str(tmp_path / "data"))

    def working(*args: str) -> str:
        done = subprocess.run(
            _runtime(*args), cwd=root, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    working("adopt-migrations")
    module = root / "plainreflex" / "plainreflex.py"
    module.write_text(
        module.read_text().replace("    text: str\n", "    text: str\n    signer: str = ''\n", 1)
    )
    written = working("new-migration", "-m", "entry signer")
    versions = root / "working" / "migrations" / "versions"
    new = [p for p in versions.glob("*.py") if p.name != REVISION]
    assert len(new) == 1, written
    source = new[0].read_text()
    assert "import sqlmodel" in source, source
    assert "sqlmodel.sql.sqltypes.AutoString()" in source, source
    assert "migrations: applied empty ->" in working("migrate")
    with sqlite3.connect(tmp_path / "data" / "working.db") as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(entry)")}
    assert columns == {"id", "text", "signer"}
