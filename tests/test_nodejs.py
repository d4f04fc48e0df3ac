"""A machine that cannot build the frontend says so in one line: no Node, no npm, an old Node.

Real `working` processes with a PATH that holds only python (and, where a test says so, a fake
`node`/`npm`: the outside tool, not the component under test). No export exists, so `serve`
would build one first; it must stop before Reflex ever looks for a JavaScript runtime.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services import base_env
from working.runtime.contract import contract

EXIT = contract()["exit_codes"]
# The console script, by absolute path: PATH below holds no uv and no venv.
WORKING = Path(sys.executable).parent / "working"


def _bin_dir(tmp_path: Path, **fakes: str) -> Path:
    """A PATH directory with python and the given fake programs (name -> what it prints)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "python3").symlink_to(sys.executable)
    for name, prints in fakes.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\necho '{prints}'\n")
        script.chmod(0o755)
    return bin_dir


def _run(command: list[str], bin_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = base_env(
        PATH=str(bin_dir),
        DATA_DIR=str(tmp_path / "data"),
        FRONTEND_DIR=str(tmp_path / "export"),
        DB_WAIT_TIMEOUT="1",
    )
    (tmp_path / "data").mkdir(exist_ok=True)
    return subprocess.run(
        [str(WORKING), *command], env=env, capture_output=True, text=True, timeout=120
    )


COMMANDS = {
    "serve": ["serve"],
    "build-frontend": ["build-frontend", "--out", "{tmp}/out"],
}


def _command(name: str, tmp_path: Path) -> list[str]:
    return [arg.replace("{tmp}", str(tmp_path)) for arg in COMMANDS[name]]


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, output
    # Nothing after the error: no Reflex output, no second attempt.
    assert output.splitlines()[-1] == errors[0], output
    return errors[0]


@pytest.mark.parametrize("name", COMMANDS)
def test_no_node_and_no_npm_exit_3_in_one_line(name: str, tmp_path: Path) -> None:
    result = _run(_command(name, tmp_path), _bin_dir(tmp_path), tmp_path)
    line = _one_line(result)
    assert result.returncode == EXIT["dependency"], line
    assert "needs Node.js and npm, but node and npm are not on PATH" in line
    assert "install Node.js 20.19.0 or newer with npm" in line
    assert "FRONTEND_DIR" in line
    assert "nix build .#frontend" in line
    assert not (tmp_path / "export").exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", COMMANDS)
def test_node_without_npm_names_npm(name: str, tmp_path: Path) -> None:
    result = _run(_command(name, tmp_path), _bin_dir(tmp_path, node="v20.20.2"), tmp_path)
    line = _one_line(result)
    assert result.returncode == EXIT["dependency"], line
    assert "but npm is not on PATH" in line


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("version", ["v18.20.4", "v20.18.1"])
def test_a_node_older_than_reflex_supports_exit_3_in_one_line(
    name: str, version: str, tmp_path: Path
) -> None:
    bin_dir = _bin_dir(tmp_path, node=version, npm="10.8.2")
    result = _run(_command(name, tmp_path), bin_dir, tmp_path)
    line = _one_line(result)
    assert result.returncode == EXIT["dependency"], line
    assert f"Node.js {version[1:]} at {bin_dir / 'node'} is older than 20.19.0" in line
    assert "FRONTEND_DIR" in line
    assert "nix build .#frontend" in line


def test_the_minimum_is_reflexs_own() -> None:
    from reflex_base.constants.installer import Node

    from working.runtime.nodejs import minimum_version

    assert minimum_version() == tuple(int(p) for p in Node.MIN_VERSION.split("."))
    assert minimum_version() >= (20, 19, 0)
