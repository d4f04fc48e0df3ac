"""The image contract on a real Docker engine, with the stand-in image (tests/docker_image.py).

Each container runs the way compose.yaml runs the app (read-only root, tmpfs /tmp, the data
volume, no capabilities, no-new-privileges: the flags are read from compose.yaml), against a
PostgreSQL container on a user-defined network. Health is Docker's own: the image's
HEALTHCHECK, run by the engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from containers import Container, docker, name, network, running
from docker_services import postgres_image

from nix.image_contract import check_image_tar
from services import PG_PASSWORD_URL, REPO, wait_until
from test_compose import load_app_service, parse_duration
from working.runtime.contract import contract

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CONTRACT = contract()
IMAGE = CONTRACT["image"]
PORT = CONTRACT["http"]["port"]
HEALTHY_WITHIN = CONTRACT["healthcheck"]["interval_s"] * 2 + 30


def _compose_flags() -> list[str]:
    """`docker run` flags for what compose.yaml's app service sets about the container."""
    service = load_app_service({"IMAGE": "x", "IMAGE_TAG": "y", "DATABASE_URL": "postgresql://h/d"})
    flags = ["--read-only"] if service["read_only"] else []
    for mount in service["tmpfs"]:
        flags += ["--tmpfs", mount]
    for cap in service["cap_drop"]:
        flags += ["--cap-drop", cap]
    for option in service["security_opt"]:
        flags += ["--security-opt", option]
    flags += ["--stop-timeout", str(int(parse_duration(service["stop_grace_period"])))]
    return flags


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[str, Container]]:
    """A PostgreSQL container on its own network; yields (network, container)."""
    image = postgres_image()
    with network() as net:
        pg = name("postgres")
        with running("--name", pg, "--network", net, image) as container:
            yield net, container


def _url(database: tuple[str, Container]) -> str:
    return f"postgresql://app:{PG_PASSWORD_URL}@{database[1].inspect()['Name'][1:]}:5432/app"


def _run_app(standin, database, *extra: str):  # type: ignore[no-untyped-def]
    net, _ = database
    return running(
        "--name",
        name("app"),
        "--network",
        net,
        "--publish",
        f"127.0.0.1::{PORT}",
        # An anonymous volume: filled from the image's /data (owner included) as a named one
        # is, and removed with the container.
        "--volume",
        IMAGE["data_dir"],
        "--env",
        f"DATABASE_URL={_url(database)}",
        *_compose_flags(),
        *extra,
        standin.tag,
    )


@pytest.fixture(scope="module")
def app(standin_image, database) -> Iterator[Container]:  # type: ignore[no-untyped-def]
    with _run_app(standin_image, database) as container:
        container.wait_health("healthy", HEALTHY_WITHIN)
        yield container


def test_the_standin_passes_the_flake_image_check(standin_image) -> None:  # type: ignore[no-untyped-def]
    # The same assertions nix/checks.nix runs on the Nix image's tarball.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    check_image_tar(standin_image.archive, CONTRACT, project)
    # And the engine reports the config that nix/image-config.nix evaluated to.
    loaded = json.loads(docker("image", "inspect", standin_image.tag).stdout)[0]["Config"]
    for key in ("Entrypoint", "Cmd", "User", "WorkingDir", "ExposedPorts", "StopSignal"):
        assert loaded[key] == standin_image.config[key], key
    assert loaded["Healthcheck"] == standin_image.config["Healthcheck"]
    assert sorted(loaded["Env"]) == sorted(standin_image.config["Env"])
    assert loaded["Labels"] == standin_image.config["Labels"]


def test_healthy_by_docker_and_health_through_the_published_port(app: Container) -> None:
    state = app.inspect()["State"]
    assert state["Health"]["Status"] == "healthy"
    assert all(probe["ExitCode"] == 0 for probe in state["Health"]["Log"])
    response = httpx.get(f"http://127.0.0.1:{app.port(PORT)}/health", timeout=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "healthy"
    assert body["database"] == {**body["database"], "backend": "postgresql", "status": "connected"}
    page = httpx.get(f"http://127.0.0.1:{app.port(PORT)}/", timeout=5)
    assert page.status_code == 200
    assert "<html" in page.text.lower()


_PROBE = """
import errno, json, os, pwd, sys
result = {"uid": os.getuid(), "gid": os.getgid(), "user": pwd.getpwuid(os.getuid()).pw_name,
          "writable": [], "errors": {}}
for path in sys.argv[1:]:
    try:
        with open(os.path.join(path, ".probe"), "w"):
            pass
        os.unlink(os.path.join(path, ".probe"))
        result["writable"].append(path)
    except OSError as e:
        result["errors"][path] = errno.errorcode[e.errno]
print(json.dumps(result))
"""


def _probe(app: Container, standin, user: str | None = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    paths = ["/", "/etc", "/var/empty", IMAGE["data_dir"], IMAGE["tmp_dir"]]
    paths += [standin.venv, standin.frontend]
    result = app.exec("python", "-c", _PROBE, *paths, user=user)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_runs_as_the_app_user_and_writes_only_data_and_tmp(app: Container, standin_image) -> None:  # type: ignore[no-untyped-def]
    as_app = _probe(app, standin_image)
    assert (as_app["uid"], as_app["gid"], as_app["user"]) == (IMAGE["uid"], IMAGE["gid"], "app")
    assert sorted(as_app["writable"]) == sorted([IMAGE["data_dir"], IMAGE["tmp_dir"]])
    # Even uid 0 cannot write outside them: the root filesystem itself is read-only.
    as_root = _probe(app, standin_image, user="0:0")
    assert set(as_root["writable"]) <= {IMAGE["data_dir"], IMAGE["tmp_dir"]}
    for path, error in as_root["errors"].items():
        if path not in (IMAGE["data_dir"], IMAGE["tmp_dir"]):
            assert error == "EROFS", (path, error)
    # PID 1 is the server itself, as the app user (no init, no shell in between).
    status = app.exec("python", "-c", "print(open('/proc/1/status').read())").stdout
    assert f"Uid:\t{IMAGE['uid']}\t" in status
    cmdline = app.exec("python", "-c", "print(open('/proc/1/cmdline').read())").stdout
    assert cmdline.split("\0")[:3] == standin_image.config["Entrypoint"]


def test_no_shell_in_the_container(app: Container) -> None:
    for shell in ("sh", "/bin/sh", "bash", "/bin/bash", "busybox"):
        result = app.exec(shell, "-c", "true")
        assert result.returncode != 0, f"{shell} ran in the container"
        said = (result.stdout + result.stderr).lower()
        assert "not found" in said or "no such file" in said, said
    found = app.exec(
        "python",
        "-c",
        "import os\n"
        "for root, dirs, files in os.walk('/'):\n"
        "    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ('/proc', '/sys')]\n"
        "    for f in files:\n"
        "        if f in ('sh', 'bash', 'dash', 'ash', 'zsh', 'busybox', 'curl', 'wget'):\n"
        "            print(os.path.join(root, f))\n",
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout == ""


def test_docker_stop_drains_and_exits_0(standin_image, database) -> None:  # type: ignore[no-untyped-def]
    with _run_app(standin_image, database) as container:
        container.wait_health("healthy", HEALTHY_WITHIN)
        took = container.stop()
        assert container.exit_code() == 0, container.logs()
        assert took < CONTRACT["shutdown"]["timeout_s"], took
        lines = container.logs().splitlines()
        assert any(line.startswith("[INFO] SIGTERM: draining") for line in lines), lines[-10:]
        assert lines[-1].startswith("[INFO] stopped after"), lines[-10:]
        assert not [line for line in lines if "Traceback" in line]


def test_database_outage_keeps_the_container_healthy_and_health_503(
    standin_image, database
) -> None:  # type: ignore[no-untyped-def]
    # Faster probes than the image's 10 s (the command is the image's own): three failures in a
    # row would mark it unhealthy within the outage below.
    probes = ["--health-interval", "2s", "--health-retries", "3", "--health-start-period", "30s"]
    _, pg = database
    with _run_app(standin_image, database, *probes) as container:
        container.wait_health("healthy", HEALTHY_WITHIN)
        url = f"http://127.0.0.1:{container.port(PORT)}"
        docker("pause", pg.id)
        try:
            outage = httpx.get(f"{url}/health", timeout=10)
            assert outage.status_code == 503, outage.text
            assert outage.json()["database"]["status"] == "disconnected"
            # Docker's log keeps the last five probes: let five run during the outage.
            time.sleep(5 * 2 + 4)
            state = container.inspect()["State"]
            assert state["Health"]["Status"] == "healthy", state["Health"]["Log"]
            assert [p["ExitCode"] for p in state["Health"]["Log"]] == [0] * 5, state["Health"]
            assert httpx.get(f"{url}/", timeout=10).status_code == 200
            assert httpx.get(f"{url}/health", timeout=10).status_code == 503
        finally:
            docker("unpause", pg.id)
        wait_until(
            lambda: httpx.get(f"{url}/health", timeout=10).status_code == 200,
            30,
            "/health back to 200 after the database returned",
        )


def test_smoke_script_in_container_mode(standin_image, database) -> None:  # type: ignore[no-untyped-def]
    # The deploy job's smoke test (.github/scripts/smoke.py), here with its container mode:
    # health with the commit, a WebSocket event round trip, the user, and docker stop -> 0.
    with _run_app(standin_image, database) as container:
        url = f"http://127.0.0.1:{container.port(PORT)}"
        smoke = subprocess.run(
            [
                sys.executable,
                str(REPO / ".github" / "scripts" / "smoke.py"),
                url,
                "--container",
                container.id,
                "--commit",
                standin_image.revision,
                "--service",
                CONTRACT["service"],
                "--wait",
                str(HEALTHY_WITHIN),
            ],
            capture_output=True,
            text=True,
            timeout=HEALTHY_WITHIN + 120,
            check=False,
        )
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        passed = [line.split()[1] for line in smoke.stdout.splitlines() if line.startswith("ok ")]
        checks = {"health:", "websocket:", "event:", "user:", "stop:"}
        assert checks <= set(passed), smoke.stdout
        assert f"runs as uid {IMAGE['uid']}" in smoke.stdout
        assert container.exit_code() == 0
