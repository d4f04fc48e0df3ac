"""The entrypoint as the image runs it: real processes, real exit codes, one-line errors."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from margins import within

from services import (
    PG_PASSWORD_URL,
    MigrationGate,
    Postgres,
    Server,
    SqliteMigrationGate,
    assert_no_password,
    base_env,
    free_port,
)
from working.runtime import app_settings, build_facts
from working.runtime.contract import contract
from working.runtime.settings import SQLITE_FILE

EXIT = contract()["exit_codes"]


def run(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "working.runtime.entrypoint", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


BAD_SETTINGS = [
    ({"PORT": "abc"}, "PORT is 'abc'"),
    ({"BACKEND_PORT": "8000"}, "BACKEND_PORT is 8000 but the app serves frontend and backend"),
    ({"DATABASE_URL": "mysql://app:pw-Zq8;s3cr3t@db/app"}, "DATABASE_URL has the unsupported"),
    ({"REDIS_URL": f"http://:{PG_PASSWORD_URL}@cache:6379"}, "REDIS_URL has the unsupported"),
    ({"WEB_CONCURRENCY": "3"}, "WEB_CONCURRENCY is 3 but REDIS_URL is not set"),
    ({"ALLOWED_ORIGINS": "*"}, "ALLOWED_ORIGINS is * in prod"),
    ({"DB_WAIT_TIMEOUT": "forever"}, "DB_WAIT_TIMEOUT is 'forever'"),
    ({"LOG_FORMAT": "yaml"}, "LOG_FORMAT is 'yaml'"),
]


@pytest.mark.parametrize("command", ["serve", "migrate", "check-config"])
@pytest.mark.parametrize(
    ("environ", "message"), BAD_SETTINGS, ids=[next(iter(e)) for e, _ in BAD_SETTINGS]
)
def test_bad_settings_exit_2_with_one_line(
    command: str, environ: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = run(command, env=base_env(DATA_DIR=str(tmp_path), **environ))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == EXIT["config"], f"exit {result.returncode}: {output}"
    assert output.count("\n") == 0, output
    assert output.startswith("[ERROR] " + message)
    assert "Traceback" not in output
    assert_no_password(output, *(v for k, v in environ.items() if k.endswith("_URL")))


@pytest.mark.parametrize("command", ["serve", "migrate", "check-config"])
def test_a_blank_database_url_exits_2_and_never_falls_back_to_sqlite(
    command: str, tmp_path: Path
) -> None:
    # What Coolify passes when ${DATABASE_URL:?} was left blank in its UI.
    data = tmp_path / "data"
    result = run(command, env=base_env(DATA_DIR=str(data), DATABASE_URL=""))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == EXIT["config"], output
    assert output.count("\n") == 0, output
    assert output.startswith("[ERROR] DATABASE_URL is set but empty; expected a value (")
    assert "or no DATABASE_URL at all for its default" in output
    assert not data.exists(), "a SQLite database was created"


def test_healthcheck_never_exits_with_dockers_reserved_code() -> None:
    result = run("healthcheck", env=base_env(PORT=""))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("unhealthy: PORT is set but empty")


def test_check_config_prints_effective_settings_masked(tmp_path: Path) -> None:
    url = "postgresql://app:pw-Zq8;s3cr3t@db.internal:5432/app"
    result = run(
        "check-config", env=base_env(DATABASE_URL=url, REDIS_URL="redis://:r3dis-pw@cache:6379/0")
    )
    assert result.returncode == 0, result.stderr
    # An env file: NAME=value lines, the app's own settings after a `#` line of their own.
    printed = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    lines = dict(line.split("=", 1) for line in printed)
    assert lines["DATABASE_URL"] == "postgresql+psycopg://app:***@db.internal:5432/app"
    assert lines["REDIS_URL"] == "redis://:***@cache:6379/0"
    assert lines["PORT"] == "3000"
    app_names = {setting.name for setting in app_settings.declared()}
    assert set(lines) <= set(contract()["env"]) | app_names
    assert app_names <= set(lines)
    assert_no_password(result.stdout, url)
    assert "r3dis-pw" not in result.stdout


@pytest.mark.parametrize("command", list(contract()["entrypoint"]["commands"]))
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help", env=base_env())
    assert result.returncode == 0
    assert f"usage: working {command}" in result.stdout


def test_healthcheck_fails_when_nothing_listens() -> None:
    result = run("healthcheck", "--timeout", "1", env=base_env(PORT=str(free_port())))
    assert result.returncode == 1
    assert result.stdout.startswith("unhealthy: http://127.0.0.1:")


def _migrate_against_nothing(timeout: str) -> tuple[subprocess.CompletedProcess[str], float]:
    url = f"postgresql://app:{PG_PASSWORD_URL}@127.0.0.1:{free_port()}/app"
    started = time.monotonic()
    result = run("migrate", env=base_env(DATABASE_URL=url, DB_WAIT_TIMEOUT=timeout))
    return result, time.monotonic() - started


@pytest.mark.postgres
def test_database_never_up_exits_3_after_the_timeout(tmp_path: Path) -> None:
    # What the process costs without any waiting (start, imports, one refused connection),
    # measured now: under load it is seconds, and the window below must not depend on it.
    _, overhead = _migrate_against_nothing("0")
    result, elapsed = _migrate_against_nothing("3")
    lines = result.stdout.strip().splitlines()
    assert result.returncode == EXIT["dependency"], f"exit {result.returncode}\n{result.stdout}"
    # It gives up at the deadline: not before, and not a backoff step (at most 2 s) later.
    assert elapsed >= 3, f"gave up after {elapsed:.1f}s with DB_WAIT_TIMEOUT=3"
    assert elapsed - overhead < 3 + within(2.5), (
        f"gave up {elapsed - overhead:.1f}s after start-up with DB_WAIT_TIMEOUT=3"
    )
    assert len([line for line in lines if line.startswith("[WARN] database not reachable")]) >= 2
    assert lines[-1].startswith("[ERROR] database not reachable after 3s")
    assert all(line.startswith(("[WARN]", "[ERROR]", "[INFO]")) for line in lines)
    assert_no_password(result.stdout + result.stderr)


@pytest.mark.postgres
def test_database_started_late_serve_proceeds(frontend_export: Path, tmp_path: Path) -> None:
    late = Postgres()
    try:
        late.init()
        late.stop()
        port = free_port()
        server = Server(
            base_env(
                DATABASE_URL=late.url(),
                DB_WAIT_TIMEOUT="30",
                PORT=str(port),
                FRONTEND_DIR=str(frontend_export),
                DATA_DIR=str(tmp_path),
            ),
            port,
        ).start()
        try:
            threading.Timer(3, late.start).start()
            ready = server.wait_healthy(timeout=40)
            assert ready >= 3
            assert any(line.startswith("[WARN] database not reachable") for line in server.lines)
            assert any("database reachable after" in line for line in server.lines)
        finally:
            server.stop()
    finally:
        late.destroy()


@pytest.mark.postgres
def test_migrate_applies_once_and_is_idempotent(pg_url: str) -> None:
    first = run("migrate", env=base_env(DATABASE_URL=pg_url))
    second = run("migrate", env=base_env(DATABASE_URL=pg_url))
    assert first.returncode == second.returncode == 0, first.stdout + first.stderr
    assert "[INFO] migrations: applied empty -> 0002" in first.stdout
    assert "[INFO] migrations: database already at 0002" in second.stdout


@pytest.mark.postgres
def test_concurrent_migrations_do_not_race(pg_url: str) -> None:
    _three_migrations_take_turns(MigrationGate(pg_url), base_env(DATABASE_URL=pg_url))


def test_replicas_sharing_a_sqlite_file_take_turns_at_the_first_migration(tmp_path: Path) -> None:
    # Replicas on one volume without DATABASE_URL: the lock file beside the database.
    data = tmp_path / "data"
    data.mkdir()
    gate = SqliteMigrationGate(data / SQLITE_FILE)
    _three_migrations_take_turns(gate, base_env(DATA_DIR=str(data)))


def _three_migrations_take_turns(gate: MigrationGate, env: dict[str, str]) -> None:
    """Deterministic: all three wait at the lock the test holds, then go; one applies."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "working.runtime.entrypoint", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        gate.release_when_waiting(3, lambda: all(p.poll() is None for p in procs))
    except BaseException:
        for p in procs:
            p.kill()
        raise
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert sum("migrations: applied empty -> 0002" in o for o in outputs) == 1, outputs
    assert sum("migrations: database already at 0002" in o for o in outputs) == 2, outputs


def _last_line(result: subprocess.CompletedProcess[str], exit_name: str) -> str:
    """The last line a failed start printed, once it exited with `exit_name`'s code and no
    traceback."""
    assert result.returncode == EXIT[exit_name], f"exit {result.returncode}\n{result.stdout}"
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.postgres
def test_failed_migration_stops_startup(pg_url: str, postgres: Postgres) -> None:
    # A table in the way of the first revision: the migration must fail and serve must not start.
    import psycopg

    with psycopg.connect(pg_url.replace("postgresql://", "postgresql://", 1)) as conn:
        conn.execute("CREATE TABLE accounts (id int)")
    result = run("serve", env=base_env(DATABASE_URL=pg_url, PORT=str(free_port())))
    assert _last_line(result, "migration").startswith("[ERROR] migration failed: ")
    assert_no_password(result.stdout + result.stderr, pg_url)


def test_an_unreadable_build_manifest_is_one_line_and_exit_1(
    frontend_export: Path, tmp_path: Path
) -> None:
    # An export whose manifest of what the compile learned is cut short (a half-copied volume).
    # The export may be read-only (a Nix store path): copyfile leaves the copies writable.
    export = tmp_path / "export"
    shutil.copytree(frontend_export, export, copy_function=shutil.copyfile)
    manifest = export / build_facts.MANIFEST
    manifest.write_text('{"bundled_libraries": []')
    env = base_env(PORT=str(free_port()), DATA_DIR=str(tmp_path / "data"), FRONTEND_DIR=str(export))
    assert _last_line(run("serve", env=env), "error") == (
        f"[ERROR] {manifest} is not a build manifest this runtime reads; rebuild the frontend "
        "(working build-frontend) with this version of the runtime"
    )


def test_a_taken_port_is_one_line_and_exit_1(frontend_export: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = base_env(
            PORT=str(port),
            HOST="127.0.0.1",
            DATA_DIR=str(tmp_path),
            FRONTEND_DIR=str(frontend_export),
        )
        result = run("serve", env=env)
    assert _last_line(result, "error") == (
        f"[ERROR] cannot listen on 127.0.0.1:{port}: Address already in use; "
        "set PORT (or HOST) to a free address"
    )
