"""The image's runtime contract, checked from the outside.

One set of assertions, used twice:
- by tests/test_nix.py on the config that nix/image-config.nix evaluates to (placeholder paths);
- by the flake's `checks.image-contract` on the image itself: it streams the built image to a tar
  and runs `python3 image_contract.py IMAGE.tar CONTRACT.toml PYPROJECT.toml`.

Standard library only: the Nix check runs it with a bare Python.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

# Environment the image sets for itself: not settings a user configures, so not in the contract.
IMAGE_ONLY_ENV = {
    "PYTHONUNBUFFERED": "1",
    "REFLEX_TELEMETRY_ENABLED": "false",
    "REFLEX_CHECK_LATEST_VERSION": "false",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-bundle.crt",
    "PATH": None,  # the venv's bin, checked below
    "HOME": None,  # the data directory, checked below
}
# Settings from the contract that the image fixes.
IMAGE_SET_SETTINGS = ("FRONTEND_DIR", "DATA_DIR", "GIT_COMMIT", "APP_VERSION")
LABELS = ("title", "version", "revision", "licenses")
STORE_PATH = re.compile(r"^/nix/store/[0-9a-z]{32}-[^/]+$")
# "No shell" means exactly this (docs/nix.md says the same):
# - no shell and no env at the image root: nothing answers /bin/sh, `docker exec app sh` fails;
# - nothing on the image's PATH but the venv's bin, which holds no shell;
# - Entrypoint, Cmd and Healthcheck are exec form (check_config): nothing starts a shell.
# It does NOT mean "no bash in the store": nixpkgs' CPython patches Lib/subprocess.py so that
# `shell=True` runs `<bash>/bin/sh` (pkgs/development/interpreters/python/cpython/default.nix,
# postPatch), so the interpreter's closure holds bash; the app itself never passes shell=True.
# Store paths that must never be in the image: Node (the frontend is prebuilt), interactive
# shells, curl.
FORBIDDEN_STORE = re.compile(
    r"nix/store/[0-9a-z]{32}-(nodejs|bash-interactive|busybox|dash|zsh|curl)-"
)
FORBIDDEN_ROOT = ("bin/sh", "bin/bash", "usr/bin/env", "bin/curl", "usr/bin/curl")
SHELLS = ("sh", "bash", "dash", "ash", "zsh", "busybox")


def load_toml(path: str | Path) -> dict[str, Any]:
    return tomllib.loads(Path(path).read_text())


def check_config(config: dict[str, Any], contract: dict[str, Any], project: dict[str, Any]) -> None:
    """Assert that a Docker/OCI image config (the `config` object) honours the contract."""
    entry = contract["entrypoint"]
    image = contract["image"]
    health = contract["healthcheck"]

    entrypoint = config["Entrypoint"]
    python = entrypoint[0]
    assert python.endswith("/bin/python"), entrypoint
    venv = python.removesuffix("/bin/python")
    assert STORE_PATH.match(venv), f"the interpreter is not in a store path: {python}"
    assert entrypoint == [python, "-m", entry["module"]]
    assert config["Cmd"] == [entry["default_command"]]
    assert entry["default_command"] in entry["commands"]

    assert config["User"] == f"{image['uid']}:{image['gid']}"
    assert image["uid"] != 0, "the image must not run as root"
    assert config["WorkingDir"] == image["workdir"]
    assert config["ExposedPorts"] == {f"{contract['http']['port']}/tcp": {}}
    assert config["StopSignal"] == contract["shutdown"]["stop_signal"]

    check = config["Healthcheck"]
    assert check["Test"] == ["CMD", python, "-m", entry["module"], *health["command"]]
    assert health["command"][0] in entry["commands"]
    seconds = 1_000_000_000
    assert check["Interval"] == health["interval_s"] * seconds
    assert check["Timeout"] == health["timeout_s"] * seconds
    assert check["StartPeriod"] == health["start_period_s"] * seconds
    assert check["Retries"] == health["retries"]

    env = dict(item.split("=", 1) for item in config["Env"])
    assert len(env) == len(config["Env"]), f"a variable is set twice: {config['Env']}"
    unknown = set(env) - set(contract["env"]) - set(IMAGE_ONLY_ENV)
    assert not unknown, f"variables neither in the contract nor image-only: {sorted(unknown)}"
    for name in IMAGE_SET_SETTINGS:
        assert name in contract["env"], f"{name} is not a contract variable"
        assert env.get(name), f"{name} is not set in the image"
    assert env["DATA_DIR"] == image["data_dir"]
    assert STORE_PATH.match(env["FRONTEND_DIR"]), env["FRONTEND_DIR"]
    assert env["APP_VERSION"] == project["version"]
    for name, value in IMAGE_ONLY_ENV.items():
        assert name in env, f"{name} is not set in the image"
        if value is not None:
            assert env[name] == value, (name, env[name])
    assert env["PATH"] == f"{venv}/bin"
    assert env["HOME"] == image["data_dir"]

    labels = config["Labels"]
    prefix = "org.opencontainers.image."
    for key in LABELS:
        assert labels.get(prefix + key), f"label {prefix}{key} is missing"
    assert labels[prefix + "title"] == contract["service"]
    assert labels[prefix + "version"] == project["version"]
    assert labels[prefix + "revision"] == env["GIT_COMMIT"]
    assert labels[prefix + "licenses"] == project["license"]
    if "Source" in project.get("urls", {}):
        assert labels[prefix + "source"] == project["urls"]["Source"]


def _name(member: tarfile.TarInfo) -> str:
    return str(PurePosixPath("/", member.name)).lstrip("/")


def check_image_tar(path: str | Path, contract: dict[str, Any], project: dict[str, Any]) -> None:
    """Assert the contract on an image tarball as `docker save` (or the stream script) writes it."""
    image = contract["image"]
    data_dir = image["data_dir"].lstrip("/")
    tmp_dir = image["tmp_dir"].lstrip("/")
    seen: dict[str, tarfile.TarInfo] = {}
    with tarfile.open(path) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
        assert len(manifest) == 1, "one image per stream"
        (entry,) = manifest
        assert entry["RepoTags"], "the image has no name:tag"
        assert entry["RepoTags"][0].startswith(f"{contract['service']}:")
        meta = json.load(archive.extractfile(entry["Config"]))
        assert meta["os"] == "linux"
        check_config(meta["config"], contract, project)
        env = dict(item.split("=", 1) for item in meta["config"]["Env"])
        on_path = [d.lstrip("/") for d in env["PATH"].split(":")]
        for layer in entry["Layers"]:
            with tarfile.open(fileobj=archive.extractfile(layer)) as files:
                for member in files:
                    name = _name(member)
                    assert not FORBIDDEN_STORE.search(name), f"forbidden in the image: {name}"
                    seen[name] = member
    for name in FORBIDDEN_ROOT:
        assert name not in seen, f"forbidden in the image: /{name}"
    for directory in on_path:
        assert directory in seen, f"/{directory} (on PATH) is not in the image"
        for shell in SHELLS:
            assert f"{directory}/{shell}" not in seen, f"a shell on PATH: /{directory}/{shell}"
    assert tmp_dir in seen, f"/{tmp_dir} is missing"
    assert seen[tmp_dir].isdir()
    assert seen[tmp_dir].mode & 0o7777 == 0o1777, oct(seen[tmp_dir].mode)
    assert data_dir in seen, f"/{data_dir} is missing"
    assert seen[data_dir].isdir()
    assert (seen[data_dir].uid, seen[data_dir].gid) == (image["uid"], image["gid"])
    passwd = {line.split(":")[0]: line for line in _read(path, "etc/passwd").splitlines()}
    assert passwd[image["user"]].split(":")[2:4] == [str(image["uid"]), str(image["gid"])]
    # No login shell: the field names /sbin/nologin, absent on purpose (nix/image.nix).
    shell = passwd[image["user"]].split(":")[6]
    assert PurePosixPath(shell).name not in SHELLS, f"the app user has a login shell: {shell}"


def _read(path: str | Path, wanted: str) -> str:
    """Text of a file in the image, following one symlink into the store (fakeNss links)."""
    with tarfile.open(path) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
        files: dict[str, tuple[str, tarfile.TarInfo]] = {}
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=archive.extractfile(layer)) as layer_tar:
                for member in layer_tar:
                    files[_name(member)] = (layer, member)
        name = wanted
        for _ in range(8):
            layer, member = files[name]
            if member.issym():
                target = PurePosixPath("/", name).parent / member.linkname
                name = str(PurePosixPath("/", target)).lstrip("/")
                continue
            with tarfile.open(fileobj=archive.extractfile(layer)) as layer_tar:
                return layer_tar.extractfile(member.name).read().decode()
    raise AssertionError(f"/{wanted}: too many symlinks")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: image_contract.py IMAGE.tar CONTRACT.toml PYPROJECT.toml", file=sys.stderr)
        return 2
    image, contract, pyproject = argv
    check_image_tar(image, load_toml(contract), load_toml(pyproject)["project"])
    print("image contract: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
