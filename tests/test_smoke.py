""".github/scripts/smoke.py against a real `working serve`: the checks the VM test, the deploy
verification and a Docker run rely on, proven here on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services import REPO, Server, base_env, free_port
from working.runtime.contract import contract

pytestmark = pytest.mark.slow

SMOKE = REPO / ".github" / "scripts" / "smoke.py"
COMMIT = "0123abc"
SERVICE = contract()["service"]
SERVE = [sys.executable, "-m", contract()["entrypoint"]["module"], "serve"]


def smoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SMOKE), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )


def lines(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """{check: "ok ..." | "FAIL ..."}, one entry per printed line."""
    result = {}
    for line in done.stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        name, _, detail = rest.strip().partition(": ")
        result[name] = f"{verdict} {detail}"
    return result


def serve_env(export: Path, data: Path, port: int) -> dict[str, str]:
    return base_env(PORT=str(port), FRONTEND_DIR=str(export), DATA_DIR=str(data), GIT_COMMIT=COMMIT)


@pytest.fixture(scope="module")
def server(frontend_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    env = serve_env(frontend_export, tmp_path_factory.mktemp("data"), port)
    srv = Server(env, port).start()
    srv.wait_healthy()
    yield srv
    srv.stop()


def test_a_running_server_passes_health_websocket_and_an_event_round_trip(server: Server) -> None:
    done = smoke(server.url, "--commit", COMMIT, "--service", SERVICE)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = lines(done)
    assert list(checks) == ["health", "websocket", "event"]
    assert checks["health"] == f"ok 200 healthy, service {SERVICE}, commit {COMMIT}"
    assert checks["websocket"].startswith("ok Engine.IO open and Socket.IO connect on /_event")
    assert checks["event"].startswith("ok hydrate answered with the root state's delta")
    assert done.stderr == ""


def test_the_engine_io_polling_transport_is_refused(server: Server) -> None:
    # Why the smoke test opens a WebSocket: Reflex 0.9.2 serves only the websocket transport,
    # so the polling handshake the old VM test used is answered 400.
    answer = httpx.get(f"{server.url}/_event/?EIO=4&transport=polling", timeout=5)
    assert answer.status_code == 400


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("--commit", "fedcba9", f"git_commit is '{COMMIT}', expected 'fedcba9'"),
        ("--service", "other", f"service is '{SERVICE}', expected 'other'"),
    ],
)
def test_a_wrong_commit_or_service_fails_with_one_line(
    server: Server, flag: str, value: str, reason: str
) -> None:
    done = smoke(server.url, flag, value, "--wait", "0")
    assert done.returncode == 1
    assert lines(done)["health"] == f"FAIL {reason}"
    # The WebSocket checks still run and pass: each check reports on its own.
    assert lines(done)["event"].startswith("ok ")
    assert "Traceback" not in done.stdout + done.stderr


def test_nothing_listening_fails_every_check_without_a_traceback() -> None:
    done = smoke(f"http://127.0.0.1:{free_port()}", "--wait", "0", "--timeout", "2")
    assert done.returncode == 1
    checks = lines(done)
    assert checks["health"].startswith("FAIL GET http://127.0.0.1:")
    assert "refused" in checks["health"]
    assert checks["websocket"].startswith("FAIL cannot connect to 127.0.0.1:")
    assert checks["event"] == "FAIL no WebSocket to send it on"
    assert "Traceback" not in done.stdout + done.stderr


def test_a_bad_url_is_a_usage_error() -> None:
    done = smoke("127.0.0.1:3000")
    assert done.returncode == 2
    assert "URL must start with http:// or https://" in done.stderr


def test_local_mode_starts_the_server_checks_its_user_and_stops_it_with_sigterm(
    frontend_export: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = serve_env(frontend_export, tmp_path / "data", port)
    root = os.geteuid() == 0
    # As root (this machine, a CI container) root must be allowed explicitly; the image and the
    # VM test never pass --allow-root.
    extra = ["--allow-root"] if root else []
    done = smoke(f"http://127.0.0.1:{port}", "--commit", COMMIT, *extra, "--", *SERVE, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = lines(done)
    assert list(checks) == ["health", "running", "websocket", "event", "user", "stop"]
    assert checks["user"].startswith(
        f"ok process {checks['user'].split()[2]} runs as uid {os.geteuid()}"
    )
    assert checks["stop"].startswith("ok SIGTERM: exit code 0 after ")


@pytest.mark.skipif(os.geteuid() != 0, reason="the root check needs a server running as root")
def test_local_mode_fails_a_server_running_as_root(frontend_export: Path, tmp_path: Path) -> None:
    port = free_port()
    env = serve_env(frontend_export, tmp_path / "data", port)
    done = smoke(f"http://127.0.0.1:{port}", "--", *SERVE, env=env)
    assert done.returncode == 1
    checks = lines(done)
    assert checks["user"].startswith("FAIL process ")
    assert checks["user"].endswith("runs as root (uid 0)")
    # The server is still stopped cleanly, and nothing of it is left running.
    assert checks["stop"].startswith("ok SIGTERM: exit code 0")


def test_local_mode_reports_a_server_that_cannot_start(tmp_path: Path) -> None:
    env = base_env(PORT="not-a-port", DATA_DIR=str(tmp_path))
    done = smoke(
        f"http://127.0.0.1:{free_port()}", "--wait", "3", "--allow-root", "--", *SERVE, env=env
    )
    assert done.returncode == 1
    checks = lines(done)
    assert checks["running"].startswith("FAIL the server exited 2; its output: ")
    log = Path(checks["running"].rsplit(" ", 1)[1])
    assert "PORT" in log.read_text()
    log.unlink()
