"""The frontend export: a pure function of the sources and the committed npm lock.

node_modules is provisioned once from nix/frontend/package-lock.json (npm ci, registry allowed);
every build after that runs in a network namespace with nothing but a loopback interface.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services import REPO
from working.runtime import frontend

pytestmark = [pytest.mark.network, pytest.mark.slow]

LOCK = REPO / frontend.LOCK_DIR


def test_lock_is_v3_with_resolved_and_integrity_for_every_package() -> None:
    lock = json.loads((LOCK / "package-lock.json").read_text())
    assert lock["lockfileVersion"] == 3
    packages = {k: v for k, v in lock["packages"].items() if k and not v.get("link")}
    assert len(packages) > 100
    for path, entry in packages.items():
        assert entry.get("resolved", "").startswith("https://registry.npmjs.org/"), path
        assert entry.get("integrity", "").startswith("sha512-"), path
    manifest = json.loads((LOCK / "package.json").read_text())
    assert lock["packages"][""]["dependencies"] == manifest["dependencies"]


def test_committed_lock_holds_what_the_app_asks_for() -> None:
    """Fails, naming the refresh command, when the app's frontend dependencies change."""
    frontend.check_lock(LOCK)


@pytest.fixture(scope="module")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A fresh npm cache, filled from this lock only.
    cache = tmp_path_factory.mktemp("npm-cache")
    return frontend.provision(LOCK, tmp_path_factory.mktemp("npm") / "tree", npm_cache=cache)


def _offline_build(
    out: Path, node_modules: Path, lock: Path = LOCK
) -> subprocess.CompletedProcess[str]:
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to build without a network")
    command = [
        "unshare",
        "--net",
        "--",
        sys.executable,
        "-m",
        "working.runtime.entrypoint",
        "build-frontend",
        "--out",
        str(out),
        "--node-modules",
        str(node_modules),
        "--lock",
        str(lock),
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def offline_builds(node_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    outs = []
    for name in ("first", "second"):
        out = tmp_path_factory.mktemp(name) / "export"
        started = time.monotonic()
        result = _offline_build(out, node_modules)
        assert result.returncode == 0, result.stdout + result.stderr
        print(f"offline build {name}: {time.monotonic() - started:.1f}s")
        outs.append(out)
    return outs


def test_builds_with_no_network(offline_builds: list[Path]) -> None:
    export = offline_builds[0]
    assert (export / "index.html").is_file()
    assert {"login.html", "notes.html", "signup.html", "status.html", "404.html"} <= {
        p.name for p in export.iterdir()
    }
    assert any((export / "assets").glob("*.js"))
    # Every sizeable text file has its precompressed siblings, decoding to the same bytes.
    css = next((export / "assets").glob("*.css"))
    assert gzip.decompress((export / "assets" / f"{css.name}.gz").read_bytes()) == css.read_bytes()
    assert (export / "assets" / f"{css.name}.br").stat().st_size < css.stat().st_size / 4
    for page in export.glob("*.html"):
        assert page.with_name(page.name + ".gz").is_file(), page.name


def test_two_clean_builds_are_byte_identical(offline_builds: list[Path]) -> None:
    first, second = (_tree_digest(out) for out in offline_builds)
    assert first == second


def test_output_holds_no_build_machine_path_and_no_node(
    offline_builds: list[Path], node_modules: Path
) -> None:
    forbidden = [
        "working-frontend-",  # the private build directory
        str(node_modules),
        str(REPO),
        str(Path.home()) + "/",
        "/nix/store/",
        "node_modules",
        shutil.which("node") or "/usr/bin/node",
    ]
    for path in offline_builds[0].rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            for needle in forbidden:
                assert needle not in text, f"{needle!r} in {path.name}"


def test_bundle_talks_to_its_own_origin(offline_builds: list[Path]) -> None:
    bundle = "".join(p.read_text() for p in (offline_builds[0] / "assets").glob("*.js"))
    assert "window.location.host" in bundle


def test_a_lock_missing_a_package_fails_in_one_line(node_modules: Path, tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    lock.mkdir()
    manifest = json.loads((LOCK / "package.json").read_text())
    del manifest["dependencies"]["sonner"]
    (lock / "package.json").write_text(json.dumps(manifest))
    locked = json.loads((LOCK / "package-lock.json").read_text())
    del locked["packages"][""]["dependencies"]["sonner"]
    del locked["packages"]["node_modules/sonner"]
    (lock / "package-lock.json").write_text(json.dumps(locked))

    result = _offline_build(tmp_path / "out", node_modules, lock)
    errors = [line for line in result.stdout.splitlines() if line.startswith("[ERROR]")]
    assert result.returncode == 1
    assert len(errors) == 1, result.stdout
    assert errors[0].startswith("[ERROR] the app needs frontend packages the committed lock lacks")
    assert "sonner@" in errors[0]
    # The lock the build was given, named the way it was given.
    assert f'run "{frontend.REFRESH_COMMAND} --lock {lock}"' in errors[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()


def _lock_variant(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """The committed manifest and a changed copy of the committed lock."""
    lock = tmp_path / "lock"
    lock.mkdir()
    shutil.copyfile(LOCK / "package.json", lock / "package.json")
    locked = json.loads((LOCK / "package-lock.json").read_text())
    change(locked)
    (lock / "package-lock.json").write_text(json.dumps(locked))
    return lock


def _assert_one_line_naming(
    result: subprocess.CompletedProcess[str], lock: Path, *needles: str
) -> None:
    errors = [line for line in result.stdout.splitlines() if line.startswith("[ERROR]")]
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(errors) == 1, result.stdout
    assert errors[0].startswith("[ERROR] the app needs frontend packages the committed lock lacks")
    assert f'run "{frontend.REFRESH_COMMAND} --lock {lock}"' in errors[0]
    for needle in needles:
        assert needle in errors[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_a_package_the_manifest_declares_but_the_lock_lacks_fails_in_one_line(
    node_modules: Path, tmp_path: Path
) -> None:
    """npm ls finds the app's `sonner` missing from the lock's tree."""

    def drop_sonner(locked: dict[str, Any]) -> None:
        del locked["packages"]["node_modules/sonner"]

    lock = _lock_variant(tmp_path, drop_sonner)
    result = _offline_build(tmp_path / "out", node_modules, lock)
    _assert_one_line_naming(result, lock, "(sonner@")
    assert not (tmp_path / "out").exists()


def test_a_locked_version_outside_the_apps_range_fails_in_one_line(
    node_modules: Path, tmp_path: Path
) -> None:
    """The lock has sonner 1.7.4; the app asks for 2.0.8: npm ls calls it invalid."""

    def old_sonner(locked: dict[str, Any]) -> None:
        locked["packages"]["node_modules/sonner"]["version"] = "1.7.4"

    lock = _lock_variant(tmp_path, old_sonner)
    # node_modules as the lock says (sonner at 1.7.4): only the range check can fail.
    installed = tmp_path / "tree" / "node_modules"
    installed.mkdir(parents=True)
    for entry in node_modules.iterdir():
        if entry.name != "sonner":
            (installed / entry.name).symlink_to(entry)
    (installed / "sonner").mkdir()
    (installed / "sonner" / "package.json").write_text('{"name": "sonner", "version": "1.7.4"}')

    result = _offline_build(tmp_path / "out", installed, lock)
    _assert_one_line_naming(result, lock, "sonner@", "(lock has 1.7.4)")
    assert not (tmp_path / "out").exists()
