"""The contenders as processes: start, wait for the first 200, measure RSS, stop.

Every process is started in its own session, so the whole tree it spawns (Reflex's compile
and Granian workers, uvicorn's supervisor) is stopped by signalling its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil


class BenchError(Exception):
    """A contender could not be started or measured."""


@dataclass
class Proc:
    name: str
    cmd: list[str]
    env: dict[str, str]
    port: int
    cwd: Path
    log: Path
    # Paths that must answer 200 before the process counts as ready (in order).
    ready_paths: tuple[str, ...] = ("/health",)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        return self

    def wait_ready(self, timeout: float) -> float:
        """Seconds from start to the first 200 on every ready path."""
        assert self.process is not None
        deadline = self.started_at + timeout
        pending = list(self.ready_paths)
        with httpx.Client(timeout=1.0) as http:
            while pending:
                if self.process.poll() is not None:
                    raise BenchError(
                        f"{self.name} exited {self.process.returncode} before it was ready; "
                        f"see {self.log}"
                    )
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.name} not ready after {timeout:g}s; see {self.log}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(self.url + pending[0]).status_code == 200:
                        pending.pop(0)
                        continue
                time.sleep(0.02)
        return time.monotonic() - self.started_at

    def rss(self) -> int:
        """Resident bytes of the process and all its descendants."""
        assert self.process is not None
        try:
            root = psutil.Process(self.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += p.memory_info().rss
        return total

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = self.process.pid  # its own session: the group id is its pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        # Whatever is left of the group (Granian workers, node) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        _wait_port_free(self.port, 10.0)


def _wait_port_free(port: int, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.1)
