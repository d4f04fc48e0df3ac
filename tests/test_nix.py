"""The Nix side of the project, checked without building anything.

Nix cannot build or download here, so these tests check what can be checked by parsing and
evaluating: every .nix file parses; flake.lock agrees with flake.nix and with the pins in
../shared/pins.md; the image config written in Nix says what the runtime contract says; and
uv2nix resolves this repository's uv.lock to one wheel per runtime package.

Nix comes from `nix-instantiate` on PATH, or else from ../shared/tools/nix-chroot (Nix 2.26 in a
Debian chroot; its first run needs root, debootstrap and about a minute). Without either, the
tests marked `nix` skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker

REPO = Path(__file__).resolve().parent.parent
# ../shared beside the checkout (or beside the worktrees' parent, for a git worktree).
SHARED = next(
    (p / "shared" for p in (REPO.parent, REPO.parent.parent) if (p / "shared").is_dir()),
    REPO.parent / "shared",
)
PINS = SHARED / "pins.md"
NIX_CHROOT = SHARED / "tools" / "nix-chroot"
IN_CI = os.environ.get("CI", "").lower() == "true"
NIX_FILES = sorted(
    [REPO / "flake.nix", *(REPO / "nix").glob("*.nix"), *(REPO / "tests" / "nix").glob("*.nix")]
)
PLACEHOLDER_VENV = "/nix/store/" + "0" * 32 + "-working-env"
PLACEHOLDER_FRONTEND = "/nix/store/" + "1" * 32 + "-working-frontend"
PLACEHOLDER_REVISION = "0123456789abcdef0123456789abcdef01234567"
LINUX_MACHINES = {"x86_64-linux": "x86_64", "aarch64-linux": "aarch64"}


def _load_image_contract():
    spec = importlib.util.spec_from_file_location(
        "image_contract", REPO / "tests" / "nix" / "image_contract.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


image_contract = _load_image_contract()


class Nix:
    """Runs Nix commands natively or through nix-chroot (which sees only its working directory).

    `root` stands in for the repository: nix-chroot bind-mounts a working directory once and
    keeps the mount, so a path reused after deletion (a fresh clone in the same place) would be
    stale inside the chroot. A copy at a new path per session avoids that.
    """

    def __init__(self, prefix: list[str], root: Path = REPO) -> None:
        self.prefix = prefix
        self.root = root

    def run(self, *args: str, cwd: Path = REPO) -> str:
        if cwd == REPO:
            cwd = self.root
        result = subprocess.run(
            [*self.prefix, *args], cwd=cwd, capture_output=True, text=True, timeout=900
        )
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{result.stderr[-4000:]}")
        return result.stdout

    def eval_json(self, *args: str, cwd: Path = REPO) -> Any:
        return json.loads(
            self.run("nix-instantiate", "--eval", "--strict", "--json", *args, cwd=cwd)
        )


def _unavailable(why: str) -> None:
    if IN_CI:
        pytest.fail(f"Nix is required in CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def nix() -> Nix:
    if shutil.which("nix-instantiate"):
        return Nix([])
    if not NIX_CHROOT.is_file():
        _unavailable(f"no nix-instantiate on PATH and no {NIX_CHROOT}")
    if os.geteuid() != 0:
        _unavailable("nix-chroot needs root")
    copy = Path(tempfile.mkdtemp(prefix="working-nix-repo-")) / "repo"
    shutil.copytree(
        REPO,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".web", "data", "__pycache__", "node_modules"
        ),
    )
    return Nix([str(NIX_CHROOT)], root=copy)


def _project() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


# --- every .nix file parses -------------------------------------------------------------------


@pytest.mark.nix
@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_nix_file_parses(nix: Nix, path: Path) -> None:
    nix.run("nix-instantiate", "--parse", str(path.relative_to(REPO)))


# --- flake.lock ---------------------------------------------------------------------------------


def _lock() -> dict[str, Any]:
    return json.loads((REPO / "flake.lock").read_text())


def _original_url(original: dict[str, Any]) -> str:
    assert original["type"] == "github", original
    ref = f"/{original['ref']}" if "ref" in original else ""
    return f"github:{original['owner']}/{original['repo']}{ref}"


def _resolve(lock: dict[str, Any], target: str | list[str]) -> str:
    """The node a lock input points at: a node name, or a follows path from the root."""
    if isinstance(target, str):
        return target
    node = lock["root"]
    for name in target:
        node = _resolve(lock, lock["nodes"][node]["inputs"][name])
    return node


def test_flake_lock_is_complete_and_consistent() -> None:
    lock = _lock()
    assert lock["version"] == 7
    nodes = lock["nodes"]
    root = nodes[lock["root"]]
    reached = set()
    for name, node in nodes.items():
        for target in node.get("inputs", {}).values():
            resolved = _resolve(lock, target)
            assert resolved in nodes, f"{name}: input {target} does not resolve"
            reached.add(resolved)
        if name == lock["root"]:
            continue
        locked, original = node["locked"], node["original"]
        assert locked["type"] == original["type"] == "github"
        assert (locked["owner"], locked["repo"]) == (original["owner"], original["repo"])
        assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"]), locked["rev"]
        assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"]), locked["narHash"]
        assert isinstance(locked["lastModified"], int)
    assert reached == set(nodes) - {lock["root"]}, "every non-root node is some input's target"
    # Everything below the root follows the root's inputs: one nixpkgs, one pyproject.nix.
    for name, node in nodes.items():
        if name != lock["root"]:
            for target in node.get("inputs", {}).values():
                assert isinstance(target, list), f"{name} pins its own copy of an input"
    assert set(root["inputs"]) == {"nixpkgs", "pyproject-nix", "uv2nix", "pyproject-build-systems"}


def _pins() -> dict[str, dict[str, str]]:
    if not PINS.is_file():
        if IN_CI:
            pytest.fail(f"{PINS} is missing")
        pytest.skip(f"{PINS} is missing")
    pins = {}
    for line in PINS.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[1].startswith("github:"):
            name, original, rev, nar_hash, last_modified = cells[:5]
            pins[name] = {
                "original": original,
                "rev": rev,
                "narHash": nar_hash,
                "lastModified": last_modified,
            }
    assert pins, f"no pins found in {PINS}"
    return pins


def test_flake_lock_matches_pins() -> None:
    lock = _lock()
    root = lock["nodes"][lock["root"]]
    pins = _pins()
    assert set(pins) == set(root["inputs"])
    for name, pin in pins.items():
        node = lock["nodes"][_resolve(lock, root["inputs"][name])]
        assert _original_url(node["original"]) == pin["original"], name
        assert node["locked"]["rev"] == pin["rev"], name
        assert node["locked"]["narHash"] == pin["narHash"], name
        assert str(node["locked"]["lastModified"]) == pin["lastModified"], name


@pytest.mark.nix
def test_flake_lock_matches_flake_inputs(nix: Nix) -> None:
    """Every input in flake.nix is locked with the same `original`, and every follows resolves."""
    inputs = nix.eval_json("--expr", "(import ./flake.nix).inputs")
    lock = _lock()
    root = lock["nodes"][lock["root"]]
    assert set(inputs) == set(root["inputs"])
    for name, spec in inputs.items():
        node = lock["nodes"][_resolve(lock, root["inputs"][name])]
        assert _original_url(node["original"]) == spec["url"], name
        declared = {}
        for sub, value in spec.get("inputs", {}).items():
            assert "follows" in value, f"{name}.{sub} should follow the root input"
            declared[sub] = value["follows"].split("/")
        assert node.get("inputs", {}) == declared, name


# --- the image config in Nix against the contract ----------------------------------------------


def _evaluated_image_config(nix: Nix) -> dict[str, Any]:
    return nix.eval_json(
        "--expr",
        f"""import ./nix/image-config.nix {{
          contract = import ./nix/contract.nix;
          project = (builtins.fromTOML (builtins.readFile ./pyproject.toml)).project;
          venv = "{PLACEHOLDER_VENV}";
          frontend = "{PLACEHOLDER_FRONTEND}";
          revision = "{PLACEHOLDER_REVISION}";
        }}""",
    )


@pytest.mark.nix
def test_image_config_matches_contract(nix: Nix) -> None:
    from working.runtime.contract import contract

    config = _evaluated_image_config(nix)
    image_contract.check_config(config, contract(), _project())
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["FRONTEND_DIR"] == PLACEHOLDER_FRONTEND
    assert env["GIT_COMMIT"] == PLACEHOLDER_REVISION
    assert config["Entrypoint"][0] == f"{PLACEHOLDER_VENV}/bin/python"


@pytest.mark.nix
def test_nix_reads_the_same_contract_file(nix: Nix) -> None:
    from working.runtime.contract import contract

    assert nix.eval_json("--expr", "import ./nix/contract.nix") == contract()


# --- uv2nix against uv.lock, with the pinned library trees --------------------------------------


SOURCE_TREES = ("nixpkgs-lib", "pyproject-nix", "uv2nix", "build-system-pkgs")


def _staged_sources() -> Path:
    """Copies of the pinned trees and of the files uv2nix reads, in one directory Nix can see.

    The directory has a fixed name and is emptied, never removed: nix-chroot bind-mounts its
    working directory once and keeps the mount.
    """
    sources = os.environ.get("NIX_EVAL_SOURCES")
    if not sources:
        pytest.skip("set NIX_EVAL_SOURCES to run (see test_uv2nix_resolves_the_lock)")
    sources_dir = Path(sources)
    stage = Path(tempfile.gettempdir()) / f"working-nix-eval-{os.getuid()}"
    stage.mkdir(exist_ok=True)
    for child in stage.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for tree in SOURCE_TREES:
        if not (sources_dir / tree).is_dir():
            pytest.fail(f"{sources_dir / tree} is missing (see test_uv2nix_resolves_the_lock)")
        shutil.copytree(sources_dir / tree, stage / "sources" / tree, symlinks=True)
    (stage / "repo").mkdir()
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(REPO / name, stage / "repo" / name)
    shutil.copy(REPO / "tests" / "nix" / "uv2nix-eval.nix", stage)
    shutil.copy(REPO / "nix" / "nixpkgs-config.nix", stage)
    return stage


def _marker_environment(machine: str) -> dict[str, str]:
    return {
        "implementation_name": "cpython",
        "implementation_version": "3.12.12",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "6.12",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": "3.12.12",
        "python_version": "3.12",
        "sys_platform": "linux",
        "extra": "",
    }


def _runtime_closure_from_lock(machine: str) -> dict[str, str]:
    """What `uv sync --no-dev` installs on Linux/CPython 3.12, walked from uv.lock in Python."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    packages: dict[str, dict[str, Any]] = {}
    for package in lock["package"]:
        assert package["name"] not in packages, f"{package['name']} is locked twice (a fork)"
        packages[package["name"]] = package
    environment = _marker_environment(machine)
    closure: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    pending = [("working", "")]
    while pending:
        name, extra = pending.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        package = packages[name]
        closure[name] = package["version"]
        deps = package.get("optional-dependencies", {}).get(extra, []) if extra else []
        if not extra:
            deps = package.get("dependencies", [])
        for dep in deps:
            if "marker" in dep and not Marker(dep["marker"]).evaluate(environment):
                continue
            pending.append((dep["name"], ""))
            pending.extend((dep["name"], e) for e in dep.get("extra", []))
    return closure


def _runtime_closure_from_nix(packages: dict[str, Any]) -> set[str]:
    """What mkVirtualEnv would put in the venv for workspace.deps.default."""
    closure: set[str] = set()
    pending: list[tuple[str, list[str]]] = [("working", [])]
    while pending:
        name, extras = pending.pop()
        if name in closure and not extras:
            continue
        closure.add(name)
        package = packages[name]
        deps = dict(package["dependencies"])
        for extra in extras:
            deps.update(package["extras"][extra])
        pending.extend(deps.items())
    return closure


@pytest.mark.nix
@pytest.mark.nix_sources
@pytest.mark.parametrize("system", sorted(LINUX_MACHINES))
def test_uv2nix_resolves_the_lock(nix: Nix, system: str) -> None:
    """uv2nix's loadWorkspace and mkPyprojectOverlay, evaluated on this repository's uv.lock.

    Needs copies of four source trees at the flake.lock revisions, which CI cannot fetch (no
    GitHub access): without NIX_EVAL_SOURCES the test skips, in CI too. To reproduce:

        git clone https://github.com/pyproject-nix/pyproject.nix  $SRC/pyproject-nix
        git -C $SRC/pyproject-nix checkout 7af23cfe91064865ecf2e835da28b45b3c6f49fd
        git clone https://github.com/pyproject-nix/uv2nix          $SRC/uv2nix
        git -C $SRC/uv2nix checkout 49dac8d206c42175b069b7c6050ba27060a21106
        git clone https://github.com/pyproject-nix/build-system-pkgs $SRC/build-system-pkgs
        git -C $SRC/build-system-pkgs checkout 90ffdeee1a4929b231913df067448cd9803d3e07
        git clone https://github.com/nix-community/nixpkgs.lib     $SRC/nixpkgs-lib
        NIX_EVAL_SOURCES=$SRC uv run pytest tests/test_nix.py -k uv2nix

    (`nix hash path $SRC/uv2nix` etc. must print the narHash in flake.lock; nixpkgs.lib is
    nixpkgs' lib/ alone, so any recent revision will do.) The evaluation, tests/nix/uv2nix-eval.nix,
    applies the overlay to a stand-in CPython 3.12/glibc interpreter for `system` and checks that
    every runtime package resolves to a compatible wheel, with the versions and the dependency
    closure that uv itself locked.
    """
    stage = _staged_sources()
    result = nix.eval_json(
        "./uv2nix-eval.nix",
        "--arg", "sources", "./sources",
        "--arg", "repo", "./repo",
        "--argstr", "system", system,
        cwd=stage,
    )  # fmt: skip
    assert result["deps"]["default"] == {"working": []}, "the image venv gets runtime deps only"
    assert result["deps"]["all"] == {"working": ["dev"]}
    packages = result["packages"]

    machine = LINUX_MACHINES[system]
    expected = _runtime_closure_from_lock(machine)
    closure = _runtime_closure_from_nix(packages)
    assert closure == set(expected)
    assert "reflex" in closure
    assert "psycopg-binary" in closure
    for name in sorted(closure - {"working"}):
        package = packages[name]
        assert package["version"] == expected[name], name
        assert package["format"] == "wheel", f"{name} would be built from source"
        wheel = package["wheel"]
        assert wheel.endswith("-any.whl") or machine in wheel, f"{name}: {wheel}"
        tags = wheel.removesuffix(".whl").split("-")[-3:]
        assert re.search(r"py3|cp312|abi3", "-".join(tags[:2])), f"{name}: {wheel}"
    assert packages["working"]["format"] == "local"
    print(f"{system}: {len(closure)} runtime packages, all wheels")


@pytest.mark.nix
@pytest.mark.nix_sources
def test_insecure_permit_is_node_20_only(nix: Nix) -> None:
    """The nixpkgs config permits Node 20 (nodejs, nodejs-slim, its source) and nothing else."""
    stage = _staged_sources()
    names = [
        "nodejs-20.20.2",
        "nodejs-slim-20.20.2",
        "nodejs-20.20.2-source",
        "nodejs-22.22.0",
        "nodejs-slim-22.22.0",
        "openssl-1.1.1w",
        "python3-3.12.12",
    ]
    nix_list = "[ " + " ".join(map(json.dumps, names)) + " ]"
    verdicts = nix.eval_json(
        "--expr",
        f"""let
          lib = import ./sources/nixpkgs-lib/lib;
          config = import ./nixpkgs-config.nix {{ inherit lib; }};
        in map (name: config.allowInsecurePredicate {{ inherit name; }}) {nix_list}""",
        cwd=stage,
    )
    assert dict(zip(names, verdicts, strict=True)) == {
        name: name.startswith(("nodejs-20.", "nodejs-slim-20.")) for name in names
    }


# --- the frontend export holds no store path, compressed or not --------------------------------

STORE_PATH = re.compile(rb"/nix/store/[0-9a-df-np-sv-z]{32}-")


def _store_path(name: str) -> str:
    """A well-formed store path (Nix base-32 hash) that exists nowhere."""
    return f"/nix/store/0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-{name}"


def _decoded(path: Path) -> bytes:
    body = path.read_bytes()
    if path.suffix == ".gz":
        return gzip.decompress(body)
    if path.suffix == ".br":  # Python's stdlib has no Brotli; Node, which built it, has.
        script = "process.stdout.write(require('zlib').brotliDecompressSync(require('fs').readFileSync(process.argv[1])))"  # noqa: E501
        return subprocess.run(
            ["node", "-e", script, str(path)], capture_output=True, check=True
        ).stdout
    return body


def test_store_paths_are_scrubbed_before_the_export_is_compressed(tmp_path: Path) -> None:
    """Planted paths of Node, a wheel and node_modules (any /nix/store/<hash>-, not a list of
    known ones) are gone from every file, and from the .br/.gz made of them."""
    from working.runtime.frontend import _precompress

    export = tmp_path / "export"
    (export / "assets").mkdir(parents=True)
    bundle = export / "assets" / "app.js"
    filler = "const x = 1;\n" * 40  # above the 256-byte threshold: it gets .br and .gz
    bundle.write_text(
        f"// from {_store_path('nodejs-slim-20.20.2')}/lib/node_modules/npm\n{filler}"
        f'var site = "{_store_path("python3.12-reflex-0.9.2")}/lib/python3.12";\n'
        f"//# sourceMappingURL={_store_path('node-modules')}/node_modules/x/app.js.map\n"
    )
    size = bundle.stat().st_size
    (export / "robots.txt").write_text(f"# {_store_path('working-env')}\n")  # too small to compress
    (export / "logo.png").write_bytes(b"\x89PNG\x00" + _store_path("zlib-1.3").encode() + b"\xff")

    _precompress(export)

    files = sorted(p for p in export.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"app.js", "app.js.br", "app.js.gz", "robots.txt"}
    for path in files:
        assert not STORE_PATH.search(_decoded(path)), path.name
    text = bundle.read_text()
    assert bundle.stat().st_size == size, "hashes are replaced, not removed: offsets stay"
    assert f"/nix/store/{'e' * 32}-nodejs-slim-20.20.2/lib" in text
    assert _decoded(export / "assets" / "app.js.br") == bundle.read_bytes()
    assert _decoded(export / "assets" / "app.js.gz") == bundle.read_bytes()


def test_a_store_path_hidden_in_a_compressed_file_fails_the_build(tmp_path: Path) -> None:
    """A store path inside a .gz that the build did not make (so could not scrub first) is
    found by decompressing it, and the build stops naming the file."""
    from working.runtime.errors import FrontendError
    from working.runtime.frontend import _precompress

    export = tmp_path / "export"
    export.mkdir()
    (export / "index.html").write_text("<html></html>")
    hidden = f"import '{_store_path('node-modules')}/node_modules/react/index.js';\n" * 20
    (export / "vendor.js.gz").write_bytes(gzip.compress(hidden.encode()))

    with pytest.raises(FrontendError, match=r"store path survived .*: vendor\.js\.gz$"):
        _precompress(export)


# --- the whole flake, evaluated as `nix flake check` judges it -----------------------------------

FLAKE_EVAL_FILES = (
    "flake-eval.nix",
    "nixpkgs-standin.nix",
    "standin-signatures.json",
    "nixpkgs-standin",
)
LINUX_PACKAGES = {"default", "frontend", "image", "venv"}
CHECKS = {"pytest", "ruff", "image-contract", "vm"}
# Not x86_64-darwin: nixpkgs 26.05 deprecates it (flake.nix says why).
ALL_SYSTEMS = {"x86_64-linux", "aarch64-linux", "aarch64-darwin"}


def test_every_stand_in_signature_names_where_it_was_read() -> None:
    """Each recorded signature was read from a source: repository, file and a full commit, not
    taken from the manual or from callers (the stand-ins are only as true as these records)."""
    signatures = json.loads((REPO / "tests" / "nix" / "standin-signatures.json").read_text())
    for name, sig in signatures["functions"].items():
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", sig["repo"]), name
        assert sig["source"].endswith(".nix"), name
        assert re.fullmatch(r"[0-9a-f]{40}", sig["rev"] or ""), f"{name}: no revision"
        assert "not read from source" not in sig.get("note", "").lower(), name
        assert set(sig["formals"].values()) <= {True, False}, name


def _staged_flake(edits: dict[str, tuple[str, str]] | None = None) -> Path:
    """The pinned trees, the stand-in nixpkgs and a copy of this repository, in one directory.

    `edits` maps a repository file (or a harness file, such as nixpkgs-standin.nix) to an
    (old, new) replacement, to show what the harness catches.
    """
    from nix.standin_signatures import main as render_signatures

    stage = _staged_sources()
    shutil.copytree(
        REPO,
        stage / "flake",
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".web", "data", "__pycache__", "node_modules", ".pytest_cache"
        ),
    )
    for name in FLAKE_EVAL_FILES:
        source = REPO / "tests" / "nix" / name
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, stage / name)
    render_signatures(str(stage / "standin-signatures.json"), str(stage / "signatures.nix"))
    for name, (old, new) in (edits or {}).items():
        # A repository file, else a file of the harness (the stand-in nixpkgs).
        path = stage / "flake" / name
        if not path.is_file():
            path = stage / name
        text = path.read_text()
        assert old in text, f"{name}: {old!r} not found"
        path.write_text(text.replace(old, new))
    return stage


def _evaluate_flake(nix: Nix, stage: Path) -> dict[str, Any]:
    return nix.eval_json(
        "./flake-eval.nix",
        "--arg", "sources", "./sources",
        "--arg", "repo", "./flake",
        "--argstr", "rev", PLACEHOLDER_REVISION,
        cwd=stage,
    )  # fmt: skip


@pytest.mark.nix
@pytest.mark.nix_sources
def test_the_whole_flake_evaluates_like_nix_flake_check(nix: Nix) -> None:
    """Every output of flake.nix for every system it declares, judged as `nix flake check` does:
    packages, checks, dev shells and formatters instantiate to a .drv; apps are
    `{ type = "app"; program = <string>; }`.

    Needs the four pinned trees (NIX_EVAL_SOURCES, see test_uv2nix_resolves_the_lock). nixpkgs is
    tests/nix/nixpkgs-standin.nix, built on the real nixpkgs.lib (callPackage, callPackages,
    makeScope, makeOverridable), whose functions take exactly the arguments recorded in
    tests/nix/standin-signatures.json; pyproject.nix, uv2nix and build-system-pkgs are the real
    flakes. By hand:

        NIX_EVAL_SOURCES=$SRC uv run pytest tests/test_nix.py -k flake -v
    """
    judged = _evaluate_flake(nix, _staged_flake())["judged"]
    linux = set(LINUX_MACHINES)
    assert set(judged["packages"]) == linux
    assert set(judged["checks"]) == linux
    assert set(judged["apps"]) == linux
    assert set(judged["devShells"]) == ALL_SYSTEMS
    assert set(judged["formatter"]) == ALL_SYSTEMS
    for system in linux:
        assert set(judged["packages"][system]) == LINUX_PACKAGES
        assert set(judged["checks"][system]) == CHECKS
        assert judged["apps"][system]["push"].endswith("-push/bin/push")
    assert "x86_64-darwin" not in judged["devShells"], "deprecated in nixpkgs 26.05"
    for kind in ("packages", "checks", "devShells"):
        for system, outputs in judged[kind].items():
            for name, drv in outputs.items():
                assert STORE_DRV.match(drv), f"{kind}.{system}.{name}: {drv}"
    for system, drv in judged["formatter"].items():
        assert STORE_DRV.match(drv), f"formatter.{system}: {drv}"


STORE_DRV = re.compile(r"^/nix/store/[0-9a-df-np-sv-z]{32}-[^/]+\.drv$")


@pytest.mark.nix
@pytest.mark.nix_sources
@pytest.mark.parametrize(
    ("edit", "error"),
    [
        pytest.param(
            {
                "flake.nix": (
                    "app.pkgs.callPackages ./nix/checks.nix",
                    "app.pkgs.callPackage ./nix/checks.nix",
                )
            },
            r"flake attribute 'checks\.[a-z0-9_]+-linux\.override(Derivation)?' "
            r"is not a derivation",
            id="checks-through-callPackage",
        ),
        pytest.param(
            # buildImage takes runAsRoot; streamLayeredImage does not (it has fakeRootCommands).
            {"nix/image.nix": ("inherit tag;", 'inherit tag;\n  runAsRoot = "";')},
            r"called with unexpected argument 'runAsRoot'",
            id="unknown-streamLayeredImage-argument",
        ),
        pytest.param(
            {"nix/frontend.nix": ("    inherit nodejs;\n", "")},
            r"called without required argument 'nodejs'",
            id="buildNodeModules-without-nodejs",
        ),
        pytest.param(
            {"nix/checks.nix": ("  python3,\n", "  python3,\n  pythonWithNothing,\n")},
            r"called without required argument .pythonWithNothing.",
            id="callPackage-of-a-missing-package",
        ),
        pytest.param(
            {"nix/nixpkgs-config.nix": ('== "20"', '== "22"')},
            r"nodejs-(slim-)?20\.20\.2.* is marked as insecure",
            id="node-20-not-permitted",
        ),
        pytest.param(
            {"nixpkgs-standin.nix": ("        nodejs_20\n", "")},
            r"nixpkgs nixos-26\.05 at 531670d871c0e29724a02f3cbcac170adc65b58c \(flake\.lock\) "
            r"has no `nodejs_20` for [a-z0-9_]+-(linux|darwin): "
            r"Reflex 0\.9\.2 builds with Node 20; .*"
            r"\(docs/nix\.md, \"When the pinned nixpkgs lacks nodejs_20 or python312\"\)",
            id="nixpkgs-without-nodejs_20",
        ),
        pytest.param(
            {"nixpkgs-standin.nix": ("        python312\n", "")},
            r"nixpkgs nixos-26\.05 at 531670d8\w+ \(flake\.lock\) has no `python312`",
            id="nixpkgs-without-python312",
        ),
        pytest.param(
            {"flake.nix": ("          meta.description = ", "          meta.summary = ")},
            r"app 'apps\.[a-z0-9_]+-linux\.push' lacks attribute 'meta\.description'",
            id="app-without-meta-description",
        ),
    ],
)
def test_the_flake_evaluation_catches(
    nix: Nix, edit: dict[str, tuple[str, str]], error: str
) -> None:
    """The harness fails where `nix flake check` (or the pinned nixpkgs) would: finding 1 as main
    had it, an argument a nixpkgs function does not take, a missing one, a package nixpkgs does
    not have, an insecure package without its permit; and a nixpkgs without Node 20 or CPython
    3.12 stops with one message naming the pin and the fix (nix/toolchain.nix), an app without
    meta.description (a warning in newer Nix) stops here."""
    with pytest.raises(AssertionError, match=error):
        _evaluate_flake(nix, _staged_flake(edit))


@pytest.mark.nix
@pytest.mark.nix_sources
def test_the_image_evaluated_through_image_nix_meets_the_contract(nix: Nix) -> None:
    """nix/image.nix end to end (its dockerTools.streamLayeredImage call, with the venv and the
    frontend the flake builds), against the runtime contract: the config, the layer commands,
    the root's contents and the image reference."""
    from working.runtime.contract import contract

    result = _evaluate_flake(nix, _staged_flake())
    image = contract()["image"]
    for system in LINUX_MACHINES:
        asked = result["images"][system]
        config = asked["config"]
        image_contract.check_config(config, contract(), _project())
        env = dict(item.split("=", 1) for item in config["Env"])
        assert env["GIT_COMMIT"] == PLACEHOLDER_REVISION
        assert "-working-frontend-" in env["FRONTEND_DIR"]
        assert config["Entrypoint"][0].endswith("-working-env/bin/python")
        assert asked["contents"] == ["fake-nss", "ca-certificates"], "no shell, no Node at /"
        commands = asked["extraCommands"].splitlines()
        assert f"mkdir -p -m 1777 {image['tmp_dir'].lstrip('/')}" in commands
        assert any(image["data_dir"].lstrip("/") in c.split() for c in commands)
        assert asked["fakeRootCommands"].strip() == (
            f"chown {image['uid']}:{image['gid']} {image['data_dir'].lstrip('/')}"
        )
        assert asked["name"] == contract()["service"]
        assert result["imageRefs"][system] == f"{contract()['service']}:{PLACEHOLDER_REVISION[:7]}"


# --- "no shell": what the image contract promises, on image tarballs made here ------------------


def _image_tar(
    path: Path, config: dict[str, Any], extra: list[tarfile.TarInfo], shell: str = "/sbin/nologin"
) -> Path:
    """A docker-archive as the stream script writes it: manifest, config, one layer."""
    from working.runtime.contract import contract

    image = contract()["image"]
    venv_bin = dict(item.split("=", 1) for item in config["Env"])["PATH"].lstrip("/")
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as files:

        def add(name: str, kind: bytes = tarfile.DIRTYPE, **attrs: Any) -> None:
            info = tarfile.TarInfo(name)
            info.type = kind
            for key, value in attrs.items():
                setattr(info, key, value)
            files.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)

        add(image["tmp_dir"].lstrip("/"), mode=0o1777)
        add(image["data_dir"].lstrip("/"), uid=image["uid"], gid=image["gid"], mode=0o755)
        add(venv_bin, mode=0o755)
        add(f"{venv_bin}/python", tarfile.SYMTYPE, linkname="python3.12")
        add("nix/store/" + "2" * 32 + "-bash-5.3p3/bin/sh", tarfile.REGTYPE)
        passwd = f"{image['user']}:x:{image['uid']}:{image['gid']}::{image['data_dir']}:{shell}\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        files.addfile(info, io.BytesIO(passwd.encode()))
        for member in extra:
            files.addfile(member, io.BytesIO(b"") if member.isfile() else None)
    meta = json.dumps({"os": "linux", "config": config}).encode()
    manifest = json.dumps(
        [{"Config": "config.json", "RepoTags": [f"{contract()['service']}:t"], "Layers": ["l.tar"]}]
    ).encode()
    with tarfile.open(path, "w") as archive:
        for name, body in (("manifest.json", manifest), ("config.json", meta)):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
        info = tarfile.TarInfo("l.tar")
        info.size = len(layer.getvalue())
        archive.addfile(info, io.BytesIO(layer.getvalue()))
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.nix
@pytest.mark.parametrize(
    ("extra", "refusal"),
    [
        pytest.param([], None, id="bash-in-the-store-only"),
        pytest.param(
            [_member("bin/sh", tarfile.SYMTYPE, "/nix/store/x/bin/bash")], "/bin/sh", id="bin-sh"
        ),
        pytest.param([_member("usr/bin/env")], "/usr/bin/env", id="usr-bin-env"),
        pytest.param(["venv:sh"], "a shell on PATH", id="shell-on-path"),
        pytest.param(
            [_member("nix/store/" + "3" * 32 + "-bash-interactive-5.3p3/bin/bash")],
            "bash-interactive",
            id="interactive-bash",
        ),
        pytest.param(
            [_member("nix/store/" + "4" * 32 + "-nodejs-slim-20.20.2/bin/node")],
            "nodejs-slim",
            id="node",
        ),
    ],
)
def test_no_shell_means_no_shell_at_the_root_or_on_path(
    nix: Nix, tmp_path: Path, extra: list[Any], refusal: str | None
) -> None:
    """The contract's "no shell", on image tarballs: the bash that nixpkgs' CPython references
    (subprocess's shell=True) may be in the store; a shell at the root or on PATH, an
    interactive bash, Node may not."""
    from working.runtime.contract import contract

    config = _evaluated_image_config(nix)
    venv_bin = dict(item.split("=", 1) for item in config["Env"])["PATH"].lstrip("/")
    members = [_member(f"{venv_bin}/sh") if m == "venv:sh" else m for m in extra]
    tar = _image_tar(tmp_path / "image.tar", config, members)
    if refusal is None:
        image_contract.check_image_tar(tar, contract(), _project())
    else:
        with pytest.raises(AssertionError, match=re.escape(refusal)):
            image_contract.check_image_tar(tar, contract(), _project())


@pytest.mark.nix
@pytest.mark.parametrize("shell", ["/bin/sh", "/nix/store/x-bash-5.3/bin/bash"])
def test_the_app_user_has_no_login_shell(nix: Nix, tmp_path: Path, shell: str) -> None:
    """nix/image.nix names /sbin/nologin (absent on purpose); a real shell there is refused."""
    from working.runtime.contract import contract

    config = _evaluated_image_config(nix)
    tar = _image_tar(tmp_path / "image.tar", config, [], shell=shell)
    with pytest.raises(AssertionError, match="the app user has a login shell"):
        image_contract.check_image_tar(tar, contract(), _project())


# --- the workflow builds each output in its own step ---------------------------------------------


def test_the_workflow_builds_each_output_in_its_own_step() -> None:
    """On the first real build the log must say at once which output failed: evaluation first,
    then the venv, the frontend, the image and every check of nix/checks.nix, one step each, and
    the whole `nix flake check` last."""
    import yaml

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["check"]["steps"]]
    nix_runs = [run for run in runs if run.startswith("nix ")]
    builds = [run.split()[2] for run in nix_runs if run.startswith("nix build ")]
    body = (REPO / "nix" / "checks.nix").read_text().split("\nin\n", 1)[1]
    checks = set(re.findall(r"^  ([a-z-]+) =", body, re.M))
    assert checks == CHECKS
    assert nix_runs[0] == "nix flake check --no-build --all-systems"
    assert builds[:3] == [".#venv", ".#frontend", ".#image"]
    assert sorted(builds[3:]) == sorted(f".#checks.x86_64-linux.{c}" for c in CHECKS)
    assert nix_runs[-1].startswith("nix flake check --print-build-logs")
    assert all(len(run.splitlines()) == 1 for run in nix_runs), "one output per step"
