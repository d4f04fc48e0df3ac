"""The stand-in for the Nix image: built from the same contract, without Nix, for a real engine.

What nix/image.nix puts in the image, taken from this machine instead of the Nix store:
- the runtime venv, as bench/ installs it (`uv sync --frozen --no-dev --no-editable
  --compile-bytecode` plus this checkout's package as a wheel), at a store-shaped path;
- the interpreter that venv was made with (pyenv's CPython here, nixpkgs' python3 in the Nix
  image) at its own prefix (its RUNPATH names that prefix), without its test suite and tools;
- the shared-library closure of the interpreter and of every extension module (ldd);
- the frontend export, at a store-shaped path;
- fakeNss's /etc/passwd, /etc/group and /etc/nsswitch.conf with the app user, a CA bundle,
  /tmp 1777, the data directory owned by the app user; no shell, no coreutils.

Its config (Entrypoint, Cmd, User, WorkingDir, Env, ExposedPorts, StopSignal, Healthcheck,
Labels) is what nix/image-config.nix evaluates to with the stand-in's paths: the same Nix
expression the real image's config comes from, evaluated by nix-instantiate.

`python tests/docker_image.py` builds and loads it (tag working:standin) for a manual run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from oci_archive import Layer, docker_load, elf_files, shared_libraries, write_archive

from services import REPO

sys.path.insert(0, str(REPO))
from bench.contenders import runtime_venv
from working.runtime.contract import contract

# ../shared/tools/nix-chroot beside the checkout (or beside the worktrees' directory).
NIX_CHROOT = next(
    (
        p / "shared/tools/nix-chroot"
        for p in REPO.parents
        if (p / "shared/tools/nix-chroot").is_file()
    ),
    REPO.parent / "shared/tools/nix-chroot",
)
TAG = f"{contract()['service']}:standin"
# The interpreter's tree, less what a server never imports (nixpkgs' python3 has no test suite
# in its closure either).
_STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages"}
# The files the image config is evaluated from.
_NIX_INPUTS = (
    "nix/image-config.nix",
    "nix/contract.nix",
    "working/runtime/contract.toml",
    "pyproject.toml",
)


@dataclass(frozen=True)
class StandIn:
    tag: str
    archive: Path
    revision: str
    venv: str  # paths in the image
    frontend: str
    python_version: str
    config: dict


def store_path(name: str, seed: str) -> str:
    """A store-shaped path (/nix/store/<32 chars>-name), as the contract checks expect."""
    return f"/nix/store/{hashlib.sha256(f'{seed}-{name}'.encode()).hexdigest()[:32]}-{name}"


def revision() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else "0" * 40


def image_config(venv: str, frontend: str, rev: str) -> dict:
    """nix/image-config.nix evaluated with these paths (nix-instantiate, else nix-chroot)."""
    expr = f"""import ./nix/image-config.nix {{
      contract = import ./nix/contract.nix;
      project = (builtins.fromTOML (builtins.readFile ./pyproject.toml)).project;
      venv = "{venv}";
      frontend = "{frontend}";
      revision = "{rev}";
    }}"""
    args = ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr]
    if shutil.which("nix-instantiate") is None:
        if not NIX_CHROOT.is_file():
            raise RuntimeError(f"no nix-instantiate on PATH and no {NIX_CHROOT}")
        args = [str(NIX_CHROOT), *args]
    # nix-chroot sees only its working directory, bound once per path: a fresh one each time.
    with tempfile.TemporaryDirectory(prefix="working-image-config-") as tmp:
        for name in _NIX_INPUTS:
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / name, Path(tmp) / name)
        result = subprocess.run(args, cwd=tmp, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"evaluating nix/image-config.nix failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout)


def _interpreter(venv: Path) -> tuple[Path, Path, str]:
    """The venv's base interpreter: its executable, its prefix and its lib/pythonX.Y name."""
    executable = (venv / "bin" / "python").resolve()
    prefix = executable.parent.parent
    (stdlib,) = (prefix / "lib").glob("python3.*/os.py")
    return executable, prefix, stdlib.parent.name


def base_layer(venv: Path) -> tuple[Layer, str]:
    """fakeNss, CA certificates, /tmp, /data, the interpreter and every library it loads."""
    image = contract()["image"]
    layer = Layer()
    user, uid, gid = image["user"], image["uid"], image["gid"]
    # nixpkgs' fakeNss, with the extra lines nix/image.nix gives it.
    layer.text(
        "/etc/passwd",
        "root:x:0:0:root user:/var/empty:/bin/sh\n"
        f"{user}:x:{uid}:{gid}:{user}:{image['data_dir']}:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/var/empty:/bin/sh\n",
    )
    layer.text("/etc/group", f"root:x:0:\n{image['group']}:x:{gid}:\nnobody:x:65534:\n")
    layer.text("/etc/nsswitch.conf", "hosts: files dns\n")
    layer.directory("/var/empty", 0o555)
    bundle = Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
    for path in ("/etc/ssl/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt"):
        layer.data(path, bundle)
    layer.directory(image["tmp_dir"], 0o1777)
    layer.directory(image["workdir"])
    layer.directory(image["data_dir"], 0o755, uid, gid)

    executable, prefix, stdlib = _interpreter(venv)
    # The venv's bin/python links to the interpreter's python3, which links to python3.11.
    link = venv / "bin" / "python"
    layer.library(Path(os.path.normpath(link.parent / os.readlink(link))))
    for lib in (prefix / "lib").glob("libpython3*.so*"):
        layer.file(lib)
    layer.tree(
        prefix / "lib" / stdlib,
        f"{prefix}/lib/{stdlib}",
        skip=lambda p: p.name in _STDLIB_SKIP or p.name.startswith("config-"),
    )
    layer.directory(f"{prefix}/lib/{stdlib}/site-packages")
    binaries = [executable, *elf_files(prefix / "lib" / stdlib / "lib-dynload"), *elf_files(venv)]
    for lib in sorted(shared_libraries(binaries)):
        if not (lib.is_relative_to(prefix) or lib.is_relative_to(venv)):
            layer.library(lib)
    version = subprocess.run(
        [str(executable), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return layer, version


def venv_layer(venv: Path, path: str) -> Layer:
    """The venv at its image path: console scripts' shebangs name that path."""
    host = str(venv).encode()

    def relocate(file: Path, content: bytes) -> bytes:
        if file.parent.name == "bin" and content.startswith(b"#!"):
            return content.replace(host, path.encode())
        return content

    layer = Layer()
    layer.tree(venv, path, rewrite=relocate)
    return layer


def build(work: Path, export: Path, tag: str = TAG) -> StandIn:
    """Install the runtime venv, evaluate the config, write the archive and `docker load` it."""
    rev = revision()
    venv = work / "venv"
    runtime_venv(venv, timeout=900)
    venv_path = store_path("working-venv-standin", rev)
    frontend_path = store_path("working-frontend-standin", rev)
    config = image_config(venv_path, frontend_path, rev)
    base, version = base_layer(venv)
    frontend = Layer()
    frontend.tree(export, frontend_path)
    archive = work / "image.tar"
    write_archive(archive, tag, config, [base, venv_layer(venv, venv_path), frontend])
    docker_load(archive, tag)
    return StandIn(tag, archive, rev, venv_path, frontend_path, version, config)


def main() -> int:
    export = os.environ.get("WORKING_TEST_FRONTEND")
    work = Path(tempfile.mkdtemp(prefix="working-standin-"))
    if export is None:
        export = str(work / "export")
        subprocess.run(
            [sys.executable, "-m", "working.runtime.entrypoint", "build-frontend", "--out", export],
            cwd=REPO,
            check=True,
        )
    standin = build(work, Path(export))
    print(f"loaded {standin.tag} (Python {standin.python_version}) from {standin.archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
