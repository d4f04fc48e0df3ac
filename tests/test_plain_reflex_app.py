"""An app written the ordinary Reflex way, unchanged: tests/apps/plainreflex.

Its package keeps its own name (plainreflex/plainreflex.py); its rxconfig.py is a plain
`rx.Config` with its own ports, the domain it was served on and its database file; it loads an
external stylesheet (`rx.App(stylesheets=[...])`, here from a second local origin) and renders a
dynamic component (a computed var returning `rx.Component`). It keeps a guestbook in an
`rx.Model` through `rx.session()`, with the Alembic history `reflex db init` and `reflex db
makemigrations` wrote (alembic.ini, alembic/), moved by the one documented step (`working
adopt-migrations`), and a computed var that queries it. It also has what a typical app has:
uploads (`rx.upload`, `rx.get_upload_dir()`) and `rx.download` of them, a background event, a
dynamic route, `rx.LocalStorage` and `rx.Cookie`, a shared asset (`rx.asset(shared=True)`), a
data file read beside its module, and an `__init__.py` that imports the app. Built and served by
the runtime, it must work in Chromium with no CSP violation and no console error, its bundle
calling its own origin; on plain `reflex run --env prod` the same app is the control.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import select
import shlex
import shutil
import signal
import socket
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
from working.runtime import build_facts
from working.runtime.contract import contract

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.network]

APP = REPO / "tests" / "apps" / "plainreflex"
# The app's own lock (`working lock-frontend --lock`): the demo's, plus react-dropzone for
# rx.upload.
LOCK = APP / "frontend"
UPLOAD_LIMIT = contract()["limits"]["max_upload_bytes"]
SHARED_ASSET = "/external/plainreflex/plainreflex/badge.svg"
# The one revision `reflex db makemigrations` wrote for its rx.Model.
REVISION = next(p.name for p in (APP / "alembic" / "versions").glob("*.py"))
_ADOPT_FIRST = (
    "[ERROR] alembic.ini and 1 revision(s) in alembic/versions are a Reflex-style Alembic "
    "history, which the image does not hold; expected the history in working/migrations/: "
    "run `uv run working adopt-migrations` once and commit the result "
    "(docs/your-app.md, section 6)"
)
UPLOADED = ("notes.txt", b"uploaded through the browser\n")
STYLED_COLOR = "rgb(1, 2, 3)"
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
    """The app as the user has it, the runtime beside it, after the one documented step."""
    root = _assemble(tmp_path_factory.mktemp("plainreflex") / "app")
    adopted = subprocess.run(
        _runtime("adopt-migrations"),
        cwd=root,
        env=base_env(PYTHONPATH=str(root)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert (root / "working" / "migrations" / "versions" / REVISION).is_file()
    assert not (root / "alembic.ini").exists()
    return root


def _assemble(root: Path) -> Path:
    # Its own package, plainreflex/, beside the runtime's: nothing renamed, the demo absent.
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(APP, root, ignore=skip)
    shutil.copytree(REPO / "working" / "runtime", root / "working" / "runtime", ignore=skip)
    (root / "working" / "__init__.py").write_text("")
    # The contract's entrypoint module, shipped beside rxconfig.py as the wheel ships it.
    module = contract()["entrypoint"]["module"]
    shutil.copyfile(REPO / f"{module}.py", root / f"{module}.py")
    return root


def test_a_reflex_style_history_stops_serve_and_build_until_adopted(tmp_path: Path) -> None:
    """Not in the package the image holds: one line, before any table is missing at run time,
    and before a build that would prerender without it."""
    root = _assemble(tmp_path / "app")
    env = base_env(PYTHONPATH=str(root), DATA_DIR=str(tmp_path / "data"))
    export = tmp_path / "export"
    build = ("build-frontend", "--out", str(export), "--lock", str(LOCK))
    for command in (("serve",), build):
        refused = subprocess.run(
            _runtime(*command),
            cwd=root,
            env=env | {"FRONTEND_DIR": str(export)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        said = refused.stdout + refused.stderr
        assert refused.returncode == 2, said
        assert [line for line in said.splitlines() if line.startswith("[ERROR]")] == [
            _ADOPT_FIRST
        ], said
        assert "Traceback" not in said


def _runtime(*args: str) -> list[str]:
    return [sys.executable, "-m", contract()["entrypoint"]["module"], *args]


@pytest.fixture(scope="module")
def built(
    tree: Path, stylesheet_origin: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """The app's export, built once by the runtime from the app's own lock; and what it said."""
    export = tmp_path_factory.mktemp("plainreflex-export") / "export"
    result = subprocess.run(
        _runtime("build-frontend", "--out", str(export), "--lock", str(LOCK)),
        cwd=tree,
        env=base_env(
            PYTHONPATH=str(tree),
            DATA_DIR=str(tmp_path_factory.mktemp("build-data")),
            PLAINREFLEX_STYLESHEET=f"{stylesheet_origin}/fonts.css",
            # A deployment's database in the build's environment is never what it reads.
            DATABASE_URL="postgresql://u:p@127.0.0.1:9/x",
        ),
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return export, output


@pytest.mark.timeout(900)
def test_on_the_runtime_unchanged(
    browser, tree: Path, built: tuple[Path, str], stylesheet_origin: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    export, output = built
    data = tmp_path / "data"
    # The image's working directory is its data volume, not the app's: the data file beside
    # the module is found all the same.
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    env = base_env(PYTHONPATH=str(tree), DATA_DIR=str(data))
    # Each field the runtime overrides is named once, with what to set instead.
    assert "[WARN] rxconfig.py sets api_url='https://www.example.com'; ignored" in output
    assert "[WARN] rxconfig.py sets backend_port=8000; ignored" in output
    assert "[WARN] rxconfig.py sets db_url=sqlite:///reflex.db; ignored" in output
    assert output.count("sets api_url=") == 1, output
    assert not [p for p in export.rglob("*") if p.is_file() and b"example.com" in p.read_bytes()]
    # The computed var that queries the database was prerendered from the build's own scratch
    # database, at the app's head: empty tables, not an error.
    assert "0 signed" in (export / "index.html").read_text()
    # What the compile learned, for the serving process that does not compile: only the page
    # with component states is evaluated there, and /_upload is routed.
    facts = json.loads((export / build_facts.MANIFEST).read_text())
    assert facts["stateful_pages"] == ["index"], facts
    assert facts["upload_is_used"] is True, facts
    assert "@radix-ui/themes" in facts["bundled_libraries"], facts

    port = free_port()
    serve_env = env | {"PORT": str(port), "FRONTEND_DIR": str(export)}
    server = Server(serve_env, port, cwd=workdir, command=_runtime("serve")).start()
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
        _drive(browser, server.url)
        _open_a_dynamic_route_directly(browser, server.url)
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output
    finally:
        server.stop()
    assert not any(workdir.iterdir()), "serve wrote into its working directory"
    assert "Traceback" not in server.output, server.output
    # rx.session() used the runtime's engine: Reflex's "run reflex db init" never applied.
    assert "reflex db init" not in server.output
    with sqlite3.connect(data / "working.db") as conn:
        assert conn.execute("SELECT text FROM entry").fetchall() == [("signed in Chromium",)]


@pytest.mark.timeout(900)
def test_uploads_live_in_data_dir_are_bounded_and_survive_a_restart(
    browser, tree: Path, built: tuple[Path, str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """What the browser uploads lands in DATA_DIR/uploaded_files (the image's volume), is
    served from there after a restart, and an upload over max_upload_bytes is refused: 413,
    one log line, whether the body declares its length or arrives in chunks."""
    export, _ = built
    data = tmp_path / "data"
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    port = free_port()
    env = base_env(
        PYTHONPATH=str(tree), DATA_DIR=str(data), PORT=str(port), FRONTEND_DIR=str(export)
    )
    name, content = UPLOADED
    server = Server(env, port, cwd=workdir, command=_runtime("serve")).start()
    try:
        _wait(f"{server.url}/livez", server)
        headers = _drive(browser, server.url)
        assert (data / "uploaded_files" / name).read_bytes() == content
        assert not (workdir / "uploaded_files").exists()

        declared = _raw_upload(port, headers, declared=UPLOAD_LIMIT + 1)
        assert declared.startswith(b"HTTP/1.1 413 "), declared
        chunked = _raw_upload(port, headers, declared=None)
        assert chunked.startswith(b"HTTP/1.1 413 "), chunked
        # Within the limit, the same raw request is an upload like the browser's.
        small = _raw_upload(port, headers, declared=None, size=1000)
        assert small.startswith(b"HTTP/1.1 200 "), small
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output
    finally:
        server.stop()
    refusals = [line for line in server.lines if "refused an upload" in line]
    assert len(refusals) == 2, server.output
    assert f"the limit is {UPLOAD_LIMIT} bytes (max_upload_bytes)" in refusals[0]
    assert "Traceback" not in server.output, server.output

    again = Server(env, port, cwd=workdir, command=_runtime("serve")).start()
    try:
        _wait(f"{again.url}/livez", again)
        kept = httpx.get(f"{again.url}/_upload/{name}", timeout=10)
        assert kept.status_code == 200
        assert kept.content == content
    finally:
        again.stop()


@pytest.fixture(scope="module")
def read_only_server(
    tree: Path, built: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`serve` run from the app's own directory, mounted read-only (a private mount namespace):
    as in the image, whose root is read-only."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("needs root and unshare (util-linux) for a read-only bind mount")
    export, _ = built
    port = free_port()
    env = base_env(
        PYTHONPATH=str(tree),
        DATA_DIR=str(tmp_path_factory.mktemp("ro-data")),
        PORT=str(port),
        FRONTEND_DIR=str(export),
    )
    script = (
        f"mount --bind -o ro {shlex.quote(str(tree))} {shlex.quote(str(tree))} && "
        f"cd {shlex.quote(str(tree))} && exec {shlex.join(_runtime('serve'))}"
    )
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    server = Server(env, port, cwd=tree, command=command).start()
    try:
        _wait(f"{server.url}/livez", server)
        yield server
    finally:
        server.stop()


def test_serves_a_shared_asset_from_a_read_only_app_directory(read_only_server: Server) -> None:
    server = read_only_server
    page = httpx.get(f"{server.url}/", timeout=10)
    assert page.status_code == 200
    assert SHARED_ASSET in page.text
    asset = httpx.get(f"{server.url}{SHARED_ASSET}", timeout=10)
    assert asset.status_code == 200
    assert asset.content.startswith(b"<svg")
    assert "Traceback" not in server.output, server.output


def test_the_healthcheck_never_imports_the_app(read_only_server: Server, tmp_path: Path) -> None:
    """An app whose package is `working`, the runtime's own, with an __init__.py that imports
    the app (how many Reflex apps expose it): the healthcheck runs neither it nor Reflex."""
    root = tmp_path / "app"
    shutil.copytree(
        REPO / "working" / "runtime",
        root / "working" / "runtime",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    module = contract()["entrypoint"]["module"]
    shutil.copyfile(REPO / f"{module}.py", root / f"{module}.py")
    (root / "working" / "__init__.py").write_text("from .working import app\n")
    (root / "working" / "working.py").write_text(
        "import reflex as rx\n\napp = rx.App()\napp.add_page(lambda: rx.text('hi'), route='/')\n"
    )
    (root / "rxconfig.py").write_text(
        "import reflex as rx\n\nconfig = rx.Config(app_name='working')\n"
    )

    def healthcheck(module: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", module, "healthcheck"],
            cwd=root,
            env=base_env(PYTHONPATH=str(root), PORT=str(read_only_server.port)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        imported = {
            line.rsplit("|", 1)[1].strip()
            for line in done.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2
        }
        return done, imported

    done, imported = healthcheck(module)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: "), done.stdout
    assert "working.working" not in imported
    assert "reflex" not in imported
    # The fixture is what it claims: importing the package otherwise loads the app.
    _, through_package = healthcheck("working.runtime.entrypoint")
    assert "working.working" in through_package


@pytest.mark.timeout(900)
def test_on_plain_reflex_the_control(browser, stylesheet_origin: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same app on `reflex run --env prod`, as its user ran it before: the app works there
    too, so what the runtime test sees is the runtime's doing, not the app's."""
    plain = tmp_path / "plain"
    # The app as its user has it (the runtime's tree has adopted its history).
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
        _drive(browser, server.url)
    finally:
        server.stop()


def _drive(browser, url: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Each feature's main interaction, in one tab; returns the headers of the browser's
    upload request (its client token and handler), for raw requests the browser would not
    send."""
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
        # Each instance of a component state keeps its own count.
        page.locator("#right-step").click()
        page.locator("#right-step").click()
        page.locator("#left-step").click()
        page.locator("#right-steps").filter(has_text="2").wait_for(timeout=10_000)
        page.locator("#left-steps").filter(has_text="1").wait_for(timeout=10_000)
        # The guestbook: written with rx.session(), counted by a computed var, kept.
        page.locator("#entry-text").fill("signed in Chromium")
        page.locator("#entry-submit").click()
        page.locator(".entry").filter(has_text="signed in Chromium").wait_for(timeout=10_000)
        page.locator("#signed").filter(has_text="1 signed").wait_for(timeout=10_000)
        color = page.eval_on_selector("#styled", "e => getComputedStyle(e).color")
        assert color == STYLED_COLOR, "the external stylesheet was not applied"

        # Its own JS component from assets/, and an npm one that talks back to the state.
        page.locator("#greeting").filter(has_text="Hello, plain Reflex").wait_for(timeout=10_000)
        page.locator(".react-colorful__saturation").click(position={"x": 5, "y": 5})
        page.wait_for_function(
            "document.querySelector('#color')?.innerText.startsWith('#')"
            " && document.querySelector('#color').innerText !== '#aabbcc'",
            timeout=10_000,
        )
        # The data file beside the module, and the shared asset beside it, as the export has it.
        assert page.locator("#fruits").inner_text() == "apple, banana, cherry"
        page.wait_for_function(
            "document.querySelector('#shared-asset').naturalWidth > 0", timeout=10_000
        )
        # A background event: three updates pushed while it runs.
        page.locator("#tick").click()
        page.locator("#ticks").filter(has_text="3").wait_for(timeout=10_000)
        # Browser storage: kept by the browser, back in the state after a reload.
        page.locator("#nickname").fill("ada")
        page.locator("#flavour").fill("mint")
        page.wait_for_function("localStorage.getItem('nickname') === 'ada'", timeout=10_000)
        page.wait_for_function("document.cookie.includes('flavour=mint')", timeout=10_000)
        page.reload()
        page.wait_for_function(
            "document.querySelector('#nickname')?.value === 'ada'"
            " && document.querySelector('#flavour')?.value === 'mint'",
            timeout=15_000,
        )
        page.locator(".entry").filter(has_text="signed in Chromium").wait_for(timeout=15_000)
        # A dynamic route, reached the way its users reach it: a link.
        page.locator("#item-link").click()
        page.locator("#item").filter(has_text="Item 7").wait_for(timeout=10_000)

        headers = _upload_and_download(page, url)
        assert page.evaluate("window.__violations") == []
        assert errors == []
        return headers
    finally:
        context.close()


def _open_a_dynamic_route_directly(browser, url: str) -> None:  # type: ignore[no-untyped-def]
    """A link shared or a reload on /item/42: the app's page, a 200, no console error (plain
    Reflex answers 404 with its fallback page there; the route does not exist as a file)."""
    assert httpx.get(f"{url}/item/42", timeout=10).status_code == 200
    assert httpx.get(f"{url}/item/42/extra", timeout=10).status_code == 404
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        response = page.goto(f"{url}/item/42")
        assert response is not None
        assert response.status == 200
        page.locator("#item").filter(has_text="Item 42").wait_for(timeout=15_000)
        assert errors == []
    finally:
        page.close()


def _upload_and_download(page, url: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    name, content = UPLOADED
    page.goto(f"{url}/")
    page.locator("#files-link").click()
    page.locator("#upload input[type=file]").set_input_files(
        files=[{"name": name, "mimeType": "text/plain", "buffer": content}]
    )
    with page.expect_request(lambda r: r.url.endswith("/_upload")) as sent:
        page.locator("#send").click()
    page.locator("a.uploaded").filter(has_text=name).wait_for(timeout=10_000)
    with page.expect_download(timeout=10_000) as download:
        page.locator(".download").first.click()
    assert download.value.suggested_filename == name
    assert Path(download.value.path()).read_bytes() == content
    return {
        k: v
        for k, v in sent.value.all_headers().items()
        if k in ("reflex-client-token", "reflex-event-handler")
    }


def _raw_upload(
    port: int, headers: dict[str, str], *, declared: int | None, size: int = UPLOAD_LIMIT + 1
) -> bytes:
    """POST /_upload by hand: `declared` as its Content-Length (a few bytes of body then),
    or else `size` bytes of one file part, chunked; returns what the server answered."""
    boundary = "plainreflexboundary"
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if declared is not None:
            sock.sendall(
                f"POST /_upload HTTP/1.1\r\nhost: x\r\n{head}"
                f"content-type: multipart/form-data; boundary={boundary}\r\n"
                f"content-length: {declared}\r\n\r\n--{boundary}\r\n".encode()
            )
            return _answer(sock)
        sock.sendall(
            f"POST /_upload HTTP/1.1\r\nhost: x\r\n{head}"
            f"content-type: multipart/form-data; boundary={boundary}\r\n"
            "transfer-encoding: chunked\r\nconnection: close\r\n\r\n".encode()
        )
        part = (
            f"--{boundary}\r\ncontent-disposition: form-data; name=files; filename=big.bin\r\n"
            "content-type: application/octet-stream\r\n\r\n"
        ).encode()
        _chunk(sock, part)
        block = b"x" * 65536
        sent = 0
        while sent < size:
            piece = block[: size - sent]
            if not _chunk(sock, piece):
                return _answer(sock)  # refused while sending
            sent += len(piece)
        _chunk(sock, f"\r\n--{boundary}--\r\n".encode())
        with contextlib.suppress(OSError):
            sock.sendall(b"0\r\n\r\n")
        return _answer(sock)


def _chunk(sock: socket.socket, data: bytes) -> bool:
    """Sends one chunk unless the server has answered (or closed) already."""
    if select.select([sock], [], [], 0)[0]:
        return False
    try:
        sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    except OSError:
        return False
    return True


def _answer(sock: socket.socket) -> bytes:
    received = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received and received.startswith(b"HTTP/1.1 413"):
                break
    return received


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


def test_new_migration_on_the_adopted_history_writes_what_migrate_applies(
    tree: Path, tmp_path: Path
) -> None:
    """A field added to the app's rx.Model: the revision imports sqlmodel (its str columns are
    sqlmodel's AutoString), as `reflex db makemigrations` makes it, and the runtime applies it."""
    root = tmp_path / "app"
    shutil.copytree(tree, root, ignore=shutil.ignore_patterns("__pycache__"))
    env = base_env(PYTHONPATH=str(root), DATA_DIR=str(tmp_path / "data"))

    def working(*args: str) -> str:
        done = subprocess.run(
            _runtime(*args), cwd=root, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

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
