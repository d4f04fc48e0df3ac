"""The service as compose.yaml defines it, run without Docker, as close to the image as we can.

A private mount namespace gives the process what compose gives the container: a read-only root
filesystem, a fresh tmpfs on /tmp, the data volume on /data, the image's uid with no
capabilities and no-new-privileges, and only the environment that compose and the image set.
Then the compose healthcheck command runs inside the same mount namespace, as that user.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from nix.image_contract import IMAGE_ONLY_ENV
from services import Server
from test_compose import load_app_service, parse_duration
from working.runtime.contract import contract

pytestmark = [pytest.mark.postgres, pytest.mark.privileged, pytest.mark.slow]

IMAGE = contract()["image"]
FRONTEND_MOUNT = "/mnt/frontend"  # stands in for the export's store path


def _first_closed_ancestor(path: Path) -> Path | None:
    """The first directory above `path` that other users cannot enter (e.g. /root, mode 700)."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


def _as_image_user(env: dict[str, str], argv: list[str]) -> str:
    uid, gid = IMAGE["uid"], IMAGE["gid"]
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    return (
        f"exec setpriv --reuid={uid} --regid={gid} --clear-groups --no-new-privs "
        f"--inh-caps=-all --bounding-set=-all env -i {assignments} "
        + " ".join(shlex.quote(a) for a in argv)
    )


def _container_script(data: Path, export: Path, env: dict[str, str], argv: list[str]) -> str:
    interpreter = Path(sys.executable).resolve()
    closed = _first_closed_ancestor(interpreter)
    lines = [
        "set -eu",
        "mount -t tmpfs -o mode=755 staging /mnt",
        f"mkdir -p {FRONTEND_MOUNT} /mnt/keep",
        f"mount --bind -o ro {shlex.quote(str(export))} {FRONTEND_MOUNT}",
        f"mount --bind {shlex.quote(str(data))} {IMAGE['data_dir']}",
    ]
    if closed is not None:
        # The interpreter lives under a directory only root may enter: cover that directory
        # with an open tmpfs and put back, read-only, just the interpreter's tree.
        inner = interpreter.parents[len(interpreter.parents) - len(closed.parts) - 1]
        lines += [
            f"mount --bind {shlex.quote(str(inner))} /mnt/keep",
            f"mount -t tmpfs -o mode=755 cover {shlex.quote(str(closed))}",
            f"mkdir -p {shlex.quote(str(inner))}",
            f"mount --bind -o ro /mnt/keep {shlex.quote(str(inner))}",
        ]
    lines += [
        # compose: tmpfs /tmp (mode 1777), then read_only: true for everything else.
        f"mount -t tmpfs -o mode=1777,nosuid,size=64m tmp {IMAGE['tmp_dir']}",
        "mount -o remount,bind,ro /",
        "mount -o remount,ro /mnt",
        _as_image_user(env, argv),
    ]
    return "\n".join(lines)


@pytest.fixture
def container_env(pg_url: str, frontend_export: Path) -> dict[str, str]:
    service = load_app_service(
        {"IMAGE": "ghcr.io/example/working", "IMAGE_TAG": "0123abc", "DATABASE_URL": pg_url}
    )
    venv_bin = str(Path(sys.executable).parent)
    image_env = {k: v for k, v in IMAGE_ONLY_ENV.items() if v is not None}
    return {
        **image_env,
        "PATH": venv_bin,
        "FRONTEND_DIR": FRONTEND_MOUNT,
        "DATA_DIR": IMAGE["data_dir"],
        "HOME": IMAGE["data_dir"],
        "GIT_COMMIT": "0123abc",
        "APP_VERSION": "0.1.0",
        **service["environment"],
    }


def test_compose_service_runs_as_the_image_user_on_a_read_only_root(
    container_env: dict[str, str], frontend_export: Path, tmp_path: Path
) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("nsenter") is None:
        pytest.fail("needs root, setpriv and nsenter (util-linux) to build the container view")
    service = load_app_service({"IMAGE": "x", "IMAGE_TAG": "y", "DATABASE_URL": "postgresql://h/d"})
    port = int(container_env["PORT"])
    assert service["expose"] == [str(port)]

    Path(IMAGE["data_dir"]).mkdir(exist_ok=True)  # the mount point of the volume
    volume = tmp_path / "volume"
    volume.mkdir()
    os.chown(volume, IMAGE["uid"], IMAGE["gid"])
    entrypoint = [sys.executable, "-m", contract()["entrypoint"]["module"]]
    script = _container_script(
        volume,
        frontend_export,
        container_env,
        [*entrypoint, contract()["entrypoint"]["default_command"]],
    )

    server = Server(env={"PATH": os.environ["PATH"]}, port=port)
    server.command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    server.start()
    try:
        server.wait_healthy(timeout=60)
        assert server.process is not None
        pid = server.process.pid
        status = Path(f"/proc/{pid}/status").read_text()
        assert f"Uid:\t{IMAGE['uid']}\t" in status, status
        assert "CapEff:\t0000000000000000" in status
        assert "NoNewPrivs:\t1" in status

        # The compose healthcheck, exec form, inside the "container".
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD"
        check = subprocess.run(
            [
                "nsenter",
                f"--target={pid}",
                "--mount",
                "--",
                "sh",
                "-c",
                _as_image_user(container_env, test[1:]),
            ],
            capture_output=True,
            text=True,
            timeout=parse_duration(service["healthcheck"]["timeout"]),
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.startswith(f"ok: http://127.0.0.1:{port}/livez answered 200")

        # Nothing but the volume and /tmp is writable: the app kept its files on the volume.
        body = httpx.get(f"{server.url}/health").json()
        assert body["database"]["backend"] == "postgresql"
        assert body["git_commit"] == "0123abc"

        server.signal(signal.SIGTERM)
        code = server.wait(timeout=parse_duration(service["stop_grace_period"]))
        assert code == 0, server.output
    finally:
        server.stop()
