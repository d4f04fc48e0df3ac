"""`checks.pytest`, run outside Nix the way the Nix build sandbox runs it.

    uv run python -m tests.sandbox_check                       # the whole selection (.ci/run)
    uv run python -m tests.sandbox_check --frontend DIR        # reuse a built export
    uv run python -m tests.sandbox_check -- tests/test_x.py    # a part of it, while developing

Nothing is copied from nix/checks.nix: its `pytest` attribute is evaluated (Nix 2.26 through
../shared/tools/nix-chroot) for the builder command and the environment, which carry the
selection and the accepted skips of nix/pytest-check.toml. Then, as root:

- the source is the git-tracked files (what a flake's source holds), read-only as in the store;
- WORKING_TEST_FRONTEND is a read-only copy of a frontend export (built here, with the network,
  as the flake builds it in its own derivation);
- testEnv is a read-only, non-editable venv of uv.lock's runtime and dev packages;
- PATH is what the derivation gives: testEnv's bin, then this machine's programs standing in for
  each other input (node, redis), then for stdenv's common path (coreutils, findutils, diffutils,
  sed, grep, awk, tar, gzip, bzip2, make, bash, patch, xz); /usr/sbin is hidden;
- the command runs as an unprivileged user, in a network namespace with only loopback up, with
  the environment Nix gives a builder (HOME=/homeless-shelter, which does not exist, TMPDIR in
  the build directory, no LANG) plus the derivation's.

What differs from the sandbox: the rest of this machine's file system stays visible (only
programs reached through PATH are limited), the interpreter is Debian's CPython 3.11 rather than
nixpkgs' 3.12, and no setup hooks of the inputs run.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = next(
    (p / "shared" for p in (REPO.parent, REPO.parent.parent) if (p / "shared").is_dir()),
    REPO.parent / "shared",
)
NIX_CHROOT = SHARED / "tools" / "nix-chroot"
BUILDER_USER = "working-nixbld"
STORE_PATH = re.compile(r"/nix/store/[0-9a-z]{32}-[^\s/'\"]+")

# The derivation's inputs, evaluated as placeholders; the other arguments are never reached.
_EVALUATE_PYTEST = """
let
  placeholder = name: "@" + name + "@";
  checks = import ./nix/checks.nix {
    lib = throw "checks.pytest needs no lib";
    runCommand = name: attrs: buildCommand: attrs // { inherit name buildCommand; };
    testers = null;
    python3 = placeholder "python3";
    redis = placeholder "redis";
    contract = null;
    testEnv = placeholder "testEnv";
    nodejs = placeholder "nodejs";
    frontend = placeholder "frontend";
    image = null;
    revision = "0";
  };
in
{ inherit (checks.pytest) name env nativeBuildInputs buildCommand; }
"""

# This machine's programs standing in for each input of the derivation (testEnv is built here).
_INPUT_PROGRAMS = {
    "@nodejs@": ("node", "npm", "npx"),
    "@redis@": ("redis-server", "redis-cli", "redis-benchmark"),
}
# nixpkgs pkgs/stdenv/common-path.nix, as Debian packages.
_STDENV_PACKAGES = (
    "coreutils",
    "findutils",
    "diffutils",
    "sed",
    "grep",
    "tar",
    "gzip",
    "bzip2",
    "make",
    "bash",
    "patch",
    "xz-utils",
)


class Refusal(Exception):
    """What stops the rehearsal before pytest runs: one line, exit 2."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frontend", type=Path, help="a built export to use (copied read-only)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("tests", nargs="*", help="run only these (a part of the selection)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("sandbox_check: needs root (a network namespace, another user)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="working-sandbox-check-"))
    work.chmod(0o755)
    try:
        return _rehearse(work, args.frontend, args.tests)
    except Refusal as refusal:
        print(f"sandbox_check: {refusal}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"sandbox_check: kept {work}")
        else:
            subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
            shutil.rmtree(work, ignore_errors=True)


def _rehearse(work: Path, frontend: Path | None, tests: list[str]) -> int:
    store = work / "store"
    source = _tracked_files(store / "source")
    check = _evaluate(source)
    env = dict(check["env"])
    env["WORKING_TEST_FRONTEND"] = str(_read_only_export(frontend, store / "frontend"))
    test_env = _read_only_test_env(store / "test-env")
    path = [str(test_env / "bin")]
    for placeholder in check["nativeBuildInputs"]:
        if placeholder == "@testEnv@":
            continue
        if placeholder not in _INPUT_PROGRAMS:
            raise Refusal(f"checks.pytest has an input with no stand-in here: {placeholder}")
        path.append(str(_bin_of(store / placeholder.strip("@"), _INPUT_PROGRAMS[placeholder])))
    path.append(str(_bin_of(store / "stdenv", _stdenv_programs())))
    for directory in (source, store / "frontend", test_env):
        subprocess.run(["chmod", "-R", "a-w", str(directory)], check=True)

    stale = set(STORE_PATH.findall(check["buildCommand"]))
    if len(stale) != 1:
        raise Refusal(f"expected the source's store path alone in the command, found {stale}")
    command = check["buildCommand"].replace(stale.pop(), str(source))

    uid, gid = _builder_user()
    build = work / "build"
    build.mkdir()
    os.chown(build, uid, gid)
    builder_env = {
        "PATH": ":".join(path),
        "HOME": "/homeless-shelter",
        "NIX_BUILD_TOP": str(build),
        "TMPDIR": str(build),
        "TEMPDIR": str(build),
        "TMP": str(build),
        "TEMP": str(build),
        "PWD": str(build),
        "NIX_STORE": "/nix/store",
        "NIX_BUILD_CORES": str(os.cpu_count() or 1),
        "TERM": "xterm-256color",
        "name": check["name"],
        "out": str(build / "out"),
        **env,
    }
    if tests:
        builder_env["PYTEST_ADDOPTS"] = " ".join(tests)
    print(f"sandbox_check: running {check['name']} as {BUILDER_USER} ({uid}), loopback only")
    return subprocess.run(
        [
            "unshare",
            "--net",
            "--mount",
            "--propagation=private",
            "--",
            "sh",
            "-c",
            # Loopback up (Nix does so in its sandbox), then no /usr/sbin (nginx, useradd, ...).
            'ip link set lo up && mount -t tmpfs -o ro tmpfs /usr/sbin && exec "$@"',
            "sh",
            "setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "--no-new-privs",
            "--",
            "env",
            "-i",
            *(f"{key}={value}" for key, value in builder_env.items()),
            "bash",
            "-eu",
            "-o",
            "pipefail",
            "-c",
            command,
        ],
        cwd=build,
        check=False,
    ).returncode


def _tracked_files(target: Path) -> Path:
    """The files git tracks, as a flake's source holds them (working-tree contents)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        origin = REPO / name
        if origin.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target / name, follow_symlinks=False)
    return target


def _evaluate(source: Path) -> dict:  # type: ignore[type-arg]
    """nix/checks.nix's `pytest`, evaluated in the copy (the store path of `../.` computed,
    nothing written: --readonly-mode)."""
    nix = ["nix-instantiate"] if shutil.which("nix-instantiate") else [str(NIX_CHROOT)]
    if nix == [str(NIX_CHROOT)] and not NIX_CHROOT.is_file():
        raise Refusal(f"no nix-instantiate on PATH and no {NIX_CHROOT} to evaluate nix/checks.nix")
    result = subprocess.run(
        [
            *nix,
            "nix-instantiate",
            "--eval",
            "--strict",
            "--json",
            "--readonly-mode",
            "--expr",
            _EVALUATE_PYTEST,
        ],
        cwd=source,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise Refusal(f"nix/checks.nix did not evaluate: {result.stderr.strip()[-2000:]}")
    check: dict = json.loads(result.stdout)  # type: ignore[type-arg]
    return check


def _read_only_export(given: Path | None, target: Path) -> Path:
    """A copy of the export (built here when none is given), made read-only by the caller."""
    if given is None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "working.runtime.entrypoint",
                "build-frontend",
                "--out",
                str(target),
            ],
            cwd=REPO,
            check=True,
        )
    else:
        shutil.copytree(given, target)
    return target


def _read_only_test_env(target: Path) -> Path:
    """uv.lock's runtime and dev packages and the app, installed (not editable) like testEnv,
    with an interpreter any user can run."""
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        raise Refusal("no /usr/bin/python3 for the test venv (apt-get install python3)")
    subprocess.run(
        ["uv", "sync", "--frozen", "--no-editable", "--quiet", "--python", python],
        cwd=REPO,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(target)},
        check=True,
    )
    return target


def _bin_of(directory: Path, programs: tuple[str, ...]) -> Path:
    """A bin directory holding only `programs`, linked to where this machine has them."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True)
    for name in programs:
        found = shutil.which(name)
        if found is None:
            raise Refusal(f"{name} is not installed here (it stands in for a Nix input)")
        (bin_dir / name).symlink_to(Path(found).resolve())
    return bin_dir


def _stdenv_programs() -> tuple[str, ...]:
    names = {"awk"}
    for package in _STDENV_PACKAGES:
        listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
        if listed.returncode != 0:
            raise Refusal(f"dpkg does not list {package} (apt-get install {package})")
        for line in listed.stdout.splitlines():
            if re.fullmatch(r"/(usr/)?bin/[^/]+", line) and os.access(line, os.X_OK):
                names.add(Path(line).name)
    return tuple(sorted(names))


def _builder_user() -> tuple[int, int]:
    """A system user with no home and no shell, like Nix's nixbld users."""
    try:
        entry = pwd.getpwnam(BUILDER_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                BUILDER_USER,
            ],
            check=True,
        )
        entry = pwd.getpwnam(BUILDER_USER)
    return entry.pw_uid, entry.pw_gid


if __name__ == "__main__":
    sys.exit(main())
