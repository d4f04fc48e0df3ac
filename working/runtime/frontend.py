"""The static frontend export, built offline from a committed npm lock.

One build, used by everyone (the Nix derivation, the tests, `working serve` on a fresh machine):
compile the Reflex app, then `react-router build`, with `node_modules` provisioned beforehand
from `nix/frontend/package-lock.json`. Reflex's own install step (`npm install` and `npm add`
against the registry) is replaced by npm's own check that what the app asks for is in the lock
(`npm ls --package-lock-only`, offline); if it is not, the build stops with one line naming the
command that refreshes the lock.

Only a private temporary directory and `out` are written, so the build runs from a read-only
source tree (the Nix store) with a writable HOME and TMPDIR.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from . import app as app_seam
from . import build_facts
from .errors import FrontendError, WorkingError
from .nodejs import program, require_node_and_npm
from .settings import for_build

LOCK_DIR = Path("nix") / "frontend"
LOCK_FILES = ("package.json", "package-lock.json")
REFRESH_COMMAND = "uv run working lock-frontend"

# Reflex bakes an absolute backend URL into the bundle and, for localhost, swaps in the page's
# host name but keeps the baked port. The whole app is served from one origin, so the backend
# is always the page's own host and port: one bundle works on any port and behind any HTTPS
# proxy (where it also switches to wss:).
_SAME_ORIGIN_PATCH = (
    ("    endpoint.hostname = frontend_hostname;\n", "    endpoint.host = window.location.host;\n"),
    ('      endpoint.port = ""; // Assume websocket is on https port via load balancer.\n', ""),
)


# --- the build ------------------------------------------------------------------------------


def build(out: Path, node_modules: Path | None, lock_dir: Path = LOCK_DIR) -> None:
    """Write the export to `out`, replaced as a whole and never left half-written.

    Without `node_modules`, they are provisioned first from the lock (`npm ci`, which may use
    the network); with it, nothing touches the network.
    """
    out = out.absolute()
    lock_dir, lock_env = _lock(lock_dir)
    require_node_and_npm()
    if node_modules is None:
        node_modules = provision(lock_dir, _cache_dir() / _lock_digest(lock_dir))
    verify_node_modules(node_modules.absolute(), lock_dir)
    with tempfile.TemporaryDirectory(prefix="working-frontend-") as tmp:
        web = Path(tmp) / ".web"
        env = (
            _reflex_environment(web)
            | lock_env
            | {"WORKING_FRONTEND_NODE_MODULES": str(node_modules.absolute())}
        )
        # A child process: compiling imports the whole component library, which a serving
        # process should not carry, and Reflex reads its settings from the environment.
        _run_child("build", env=env, cwd=tmp)
        _publish(web / "build" / "client", out)


def check_lock(lock_dir: Path = LOCK_DIR) -> None:
    """Compile the app (no network) and check the lock holds what it asks for (npm ls)."""
    _, lock_env = _lock(lock_dir)
    require_node_and_npm()
    with tempfile.TemporaryDirectory(prefix="working-frontend-") as tmp:
        _run_child("check", env=_reflex_environment(Path(tmp) / ".web") | lock_env, cwd=tmp)


def provision(lock_dir: Path, target: Path, npm_cache: Path | None = None) -> Path:
    """`npm ci` from the lock into `target`; returns its node_modules (reused when complete)."""
    node_modules = target / "node_modules"
    if (target / ".complete").is_file():
        return node_modules
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in LOCK_FILES:
        shutil.copyfile(lock_dir / name, target / name)
    env = os.environ.copy()
    if npm_cache is not None:
        env["npm_config_cache"] = str(npm_cache)
    _run(
        _npm("ci", "--ignore-scripts", "--legacy-peer-deps", "--no-audit", "--no-fund"),
        env=env,
        cwd=target,
    )
    (target / ".complete").write_text("")
    return node_modules


def verify_node_modules(node_modules: Path, lock_dir: Path) -> None:
    """Every package of the lock is installed at the locked version (platform-only extras aside)."""
    if not node_modules.is_dir():
        raise FrontendError(f"no node_modules at {node_modules}")
    lock = json.loads((lock_dir / "package-lock.json").read_text())
    for path, entry in lock.get("packages", {}).items():
        if not path.startswith("node_modules/") or entry.get("link"):
            continue
        manifest = node_modules.parent / path / "package.json"
        if not manifest.is_file():
            if entry.get("optional"):
                continue  # e.g. a native binary for another platform
            raise FrontendError(
                f"{path} (locked at {entry.get('version')}) is missing from "
                f"{node_modules}; provision it from {lock_dir / 'package-lock.json'}"
            )
        installed = json.loads(manifest.read_text()).get("version")
        if installed != entry.get("version"):
            raise FrontendError(
                f"{path} is {installed} in {node_modules} but the lock says "
                f"{entry.get('version')}; provision node_modules from the lock again"
            )


def _publish(export: Path, out: Path) -> None:
    if not (export / "index.html").is_file():
        raise FrontendError(f"the frontend build produced no index.html in {export}")
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(export, staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


# --- refreshing the lock (network) ------------------------------------------------------------


def refresh_lock(lock_dir: Path = LOCK_DIR) -> None:
    """Let Reflex install what this app needs from the registry, and keep the resulting lock."""
    lock_dir = lock_dir.absolute()
    require_node_and_npm()
    with tempfile.TemporaryDirectory(prefix="working-lock-") as tmp:
        web = Path(tmp) / ".web"
        env = _reflex_environment(web) | {
            # Nix fetches every tarball by its URL and integrity: both must be in the lock.
            "npm_config_omit_lockfile_registry_resolved": "false",
            "npm_config_package_lock": "true",
        }
        _run_child("lock", env=env, cwd=tmp)
        lock_dir.mkdir(parents=True, exist_ok=True)
        for name in LOCK_FILES:
            shutil.copyfile(web / name, lock_dir / name)
    _check_lock_dir(lock_dir)


# --- inside the child process ---------------------------------------------------------------


def _child_build() -> None:
    from reflex.utils import build

    web = _child_compile(node_modules=Path(os.environ["WORKING_FRONTEND_NODE_MODULES"]))
    build.setup_frontend(Path.cwd())
    _pin_build_metadata(web / "reflex.json")
    _patch_same_origin(web / "utils" / "state.js")
    build.build()
    build_facts.write(web, web / "build" / "client")
    _precompress(web / "build" / "client")


def _child_check() -> None:
    _child_compile(node_modules=None)


def _child_compile(node_modules: Path | None) -> Path:
    from reflex.utils import js_runtimes, prerequisites

    lock_dir = Path(os.environ["WORKING_FRONTEND_LOCK"])
    web = _initialize_web_directory()
    wanted = _base_packages(web / "package.json")
    for name in LOCK_FILES:
        shutil.copyfile(lock_dir / name, web / name)
    if node_modules is not None:
        _link_node_modules(node_modules, web / "node_modules")

    def install_from_lock(packages: set[str], config: object) -> None:
        # Reflex's install step, made a verified no-op: the lock must already hold it all.
        plugin_packages: set[str] = set()
        for plugin in getattr(config, "plugins", ()):
            plugin_packages.update(plugin.get_frontend_development_dependencies())
            plugin_packages.update(plugin.get_frontend_dependencies())
        _check_in_lock(
            wanted | set(packages) | plugin_packages,
            web / "package.json",
            os.environ["WORKING_FRONTEND_REFRESH"],
        )

    js_runtimes.install_frontend_packages = install_from_lock
    module = prerequisites.get_compiled_app(prerender_routes=True)
    for line in app_seam.shadowed_pages(module.app):
        print(f"warning: {line}", file=sys.stderr, flush=True)
    return web


def _child_lock() -> None:
    from reflex.utils import prerequisites

    _initialize_web_directory()
    prerequisites.get_compiled_app(prerender_routes=True)  # runs Reflex's real npm install


def _initialize_web_directory() -> Path:
    from reflex.utils import prerequisites
    from reflex.utils.frontend_skeleton import initialize_web_directory

    from . import db, migrations, reflex_config
    from .settings import from_environ

    reflex_config.load()
    settings = from_environ()
    db.share_with_reflex(settings)
    migrations.apply(db.engine())
    initialize_web_directory()
    return prerequisites.get_web_dir()


def _base_packages(package_json: Path) -> set[str]:
    manifest = json.loads(package_json.read_text())
    deps = {**manifest.get("dependencies", {}), **manifest.get("devDependencies", {})}
    return {f"{name}@{spec}" for name, spec in deps.items()}


def _check_in_lock(specs: Iterable[str], package_json: Path, refresh: str) -> None:
    """Each `name@range` Reflex asks for is a direct dependency, locked at a version in range.

    The ranges are npm's to judge: `npm ls --package-lock-only` reads the lock as the installed
    tree (no node_modules, no network) and checks it against a manifest that asks for exactly
    these ranges. Two ranges for one name are joined with a space, npm's "and". Measured here:
    about 1 s per build (of 18-22 s), against 3 ms for the hand-written matcher it replaced;
    the second is worth npm's full range grammar (~, x, ||, prereleases) and no matcher to keep.
    """
    direct = _direct_dependencies(package_json)
    wanted: dict[str, list[str]] = {}
    for spec in sorted(set(specs)):
        name, version_range = _split_spec(spec)
        wanted.setdefault(name, []).append(version_range or "*")
    # Only what the committed manifest declares is sure to be installed by `npm ci`.
    missing = [
        f"{name}@{' '.join(ranges)}" for name, ranges in wanted.items() if name not in direct
    ]
    asked = {name: " ".join(ranges) for name, ranges in wanted.items() if name in direct}
    problems = _npm_lock_problems(asked, package_json.with_name("package-lock.json"))
    missing += [f"{name}@{asked[name]}{problem}" for name, problem in sorted(problems.items())]
    if missing:
        raise FrontendError(
            f"the app needs frontend packages the committed lock lacks ({', '.join(missing)}); "
            f"{refresh}"
        )


def _direct_dependencies(package_json: Path) -> dict[str, str]:
    manifest = json.loads(package_json.read_text())
    return {**manifest.get("dependencies", {}), **manifest.get("devDependencies", {})}


def _split_spec(spec: str) -> tuple[str, str]:
    scope = "@" if spec.startswith("@") else ""
    name, _, version_range = spec.removeprefix("@").partition("@")
    return scope + name, version_range


def _npm_lock_problems(asked: dict[str, str], package_lock: Path) -> dict[str, str]:
    """npm's verdict on `asked` (name -> range) against the lock: name -> "" or " (lock has v)"."""
    with tempfile.TemporaryDirectory(prefix="working-lock-check-") as tmp:
        root = Path(tmp)
        lock = json.loads(package_lock.read_text())
        manifest = {"name": lock.get("name", "app"), "dependencies": asked}
        (root / "package.json").write_text(json.dumps(manifest))
        shutil.copyfile(package_lock, root / "package-lock.json")
        result = subprocess.run(
            _npm("ls", "--package-lock-only", "--json", "--depth=0", "--logs-max=0"),
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
    try:
        tree = json.loads(result.stdout)
    except ValueError:
        tree = {}
    found = tree.get("dependencies", {})
    problems = {
        name: "" if entry.get("missing") else f" (lock has {entry.get('version')})"
        for name, entry in found.items()
        if name in asked and (entry.get("missing") or entry.get("invalid"))
    }
    if result.returncode != 0 and not problems:
        detail = (tree.get("error", {}).get("summary") or result.stderr).strip().splitlines()
        raise FrontendError(
            f"npm ls could not check {package_lock} (exit {result.returncode}): "
            f"{detail[-1] if detail else 'no output'}"
        )
    return problems


def _link_node_modules(source: Path, target: Path) -> None:
    # A directory of links rather than one link: the provisioned tree may be read-only (the Nix
    # store), and Vite writes its cache into node_modules/.vite.
    target.mkdir()
    for entry in source.iterdir():
        if entry.name != ".vite":
            (target / entry.name).symlink_to(entry)


# Node is at hand during the build and has both codecs; Python's stdlib has no Brotli. Maximum
# quality costs seconds once, at build time, instead of CPU on every request. Node's gzip header
# carries no timestamp, so the files are as reproducible as their sources.
#
# Store paths first: a bundler can leave build-time paths (node_modules, Node, the venv, any
# wheel) in comments or source maps. Every `/nix/store/<hash>-` has its hash replaced by e's (as
# nixpkgs' remove-references-to does, same length) BEFORE compressing, where no .br/.gz can hide
# one from Nix's reference scanner; then every file, decompressed, is checked, and one that
# still holds a store path fails the build (exit 3, its names on stderr).
_PRECOMPRESS_JS = r"""
const fs = require("fs"), path = require("path"), zlib = require("zlib");
const types = new Set([".js", ".mjs", ".css", ".html", ".svg", ".json", ".xml", ".txt", ".map"]);
const storePath = /\/nix\/store\/[0-9a-df-np-sv-z]{32}-/g;
const scrubbed = "/nix/store/" + "e".repeat(32) + "-";
const files = (dir) => fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
  entry.isDirectory() ? files(path.join(dir, entry.name)) : [path.join(dir, entry.name)]);
const root = process.argv[1];
const compressed = (file) => file.endsWith(".br") || file.endsWith(".gz");
for (const file of files(root).filter((f) => !compressed(f))) {
  const text = fs.readFileSync(file).toString("latin1");
  if (text.search(storePath) >= 0)
    fs.writeFileSync(file, Buffer.from(text.replace(storePath, scrubbed), "latin1"));
}
for (const file of files(root)) {
  if (compressed(file) || !types.has(path.extname(file))) continue;
  const body = fs.readFileSync(file);
  if (body.length < 256) continue;
  const br = zlib.brotliCompressSync(body, { params: {
    [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
    [zlib.constants.BROTLI_PARAM_SIZE_HINT]: body.length } });
  const gz = zlib.gzipSync(body, { level: 9 });
  if (br.length < body.length) fs.writeFileSync(file + ".br", br);
  if (gz.length < body.length) fs.writeFileSync(file + ".gz", gz);
}
const decoded = (file, body) => file.endsWith(".br") ? zlib.brotliDecompressSync(body)
  : file.endsWith(".gz") ? zlib.gunzipSync(body) : body;
const left = files(root).filter((file) => {
  const text = decoded(file, fs.readFileSync(file)).toString("latin1");
  return text.search(storePath) >= 0;  // "e" is not in Nix's base-32 alphabet
});
if (left.length) {
  process.stderr.write(left.map((f) => path.relative(root, f)).join(" "));
  process.exit(3);
}
"""


def _precompress(export: Path) -> None:
    result = subprocess.run(
        [program("node"), "-e", _PRECOMPRESS_JS, str(export)],
        cwd=export,
        capture_output=True,
        text=True,
    )
    if result.returncode == 3:
        raise FrontendError(
            f"a Nix store path survived in the frontend export: {result.stderr.strip()}"
        )
    if result.returncode != 0:
        raise FrontendError(f"precompressing the export failed: {result.stderr.strip()[-500:]}")


def _pin_build_metadata(reflex_json: Path) -> None:
    # The bundle embeds reflex.json, where Reflex puts a random project hash and the build's
    # wall-clock time; only `version` is read at run time. Fixed values keep two builds of the
    # same commit byte-identical.
    metadata = json.loads(reflex_json.read_text())
    metadata |= {"project_hash": 0, "last_reflex_run_datetime": "1970-01-01 00:00:00"}
    reflex_json.write_text(json.dumps(metadata))


def _patch_same_origin(state_js: Path) -> None:
    source = state_js.read_text()
    for old, new in _SAME_ORIGIN_PATCH:
        if old not in source:
            raise FrontendError(
                f"{state_js.name} no longer contains {old.strip()!r}: Reflex changed "
                "how it finds the backend; update _SAME_ORIGIN_PATCH in frontend.py"
            )
        source = source.replace(old, new)
    state_js.write_text(source)


# --- helpers --------------------------------------------------------------------------------


def _reflex_environment(web: Path) -> dict[str, str]:
    return {
        **os.environ,
        # A computed var may query the database while Reflex prerenders the pages: a build gets
        # a scratch SQLite database at the app's head (empty tables), never a deployment's.
        "DATABASE_URL": f"sqlite:///{web.parent / 'build.db'}",
        "REDIS_URL": "",
        "REFLEX_WEB_WORKDIR": str(web),
        "REFLEX_STATES_WORKDIR": str(web.parent / ".states"),
        "REFLEX_ENV_MODE": "prod",
        # The build compiles the frontend, even when `serve` (backend only, files.py) starts it.
        "REFLEX_BACKEND_ONLY": "false",
        # npm from PATH; Reflex would otherwise download bun.
        "REFLEX_USE_NPM": "true",
        "REFLEX_CHECK_LATEST_VERSION": "false",
        "REFLEX_TELEMETRY_ENABLED": "false",
        "NO_COLOR": "1",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }


def _lock(given: Path) -> tuple[Path, dict[str, str]]:
    """The lock's directory, checked, and what the compiling child needs of it: where it is,
    and how to refresh it, named as the user named it (`--lock DIR`, or the default)."""
    lock_dir = _check_lock_dir(given)
    shown = LOCK_DIR if lock_dir == LOCK_DIR.absolute() else given
    command = REFRESH_COMMAND if shown == LOCK_DIR else f"{REFRESH_COMMAND} --lock {shown}"
    return lock_dir, {
        "WORKING_FRONTEND_LOCK": str(lock_dir),
        "WORKING_FRONTEND_REFRESH": f'run "{command}" (needs the npm registry) and commit {shown}/',
    }


def _check_lock_dir(lock_dir: Path) -> Path:
    lock_dir = lock_dir.absolute()
    for name in LOCK_FILES:
        if not (lock_dir / name).is_file():
            raise FrontendError(
                f"no {name} in {lock_dir}: run from the repository root, pass "
                f"--lock, or create the lock with `{REFRESH_COMMAND}`"
            )
    return lock_dir


def _lock_digest(lock_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in LOCK_FILES:
        digest.update((lock_dir / name).read_bytes())
    return digest.hexdigest()[:16]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "working" / "node_modules"


def _npm(*args: str) -> list[str]:
    return [program("npm"), *args]


def _run_child(step: str, *, env: dict[str, str], cwd: str | Path) -> None:
    """Run one step in a child; its one-line error, if any, becomes this process's error.

    The child compiles the app from `cwd`, where Reflex looks for the app's assets/ (copied
    there, never written in place: the source may be read-only)."""
    assets = app_seam.assets_dir()
    if assets.is_dir():
        shutil.copytree(assets, Path(cwd) / assets.name, symlinks=True)
    report = Path(cwd) / "error.json"
    result = subprocess.run(
        [sys.executable, "-m", __name__, step],
        env=env | {"WORKING_FRONTEND_ERROR": str(report)},
        cwd=cwd,
        check=False,
    )
    if result.returncode != 0:
        if report.is_file():
            failure = json.loads(report.read_text())
            error = FrontendError(failure["message"])
            error.exit_code_name = failure["exit_code_name"]  # e.g. config, for rxconfig.py
            raise error
        raise FrontendError(
            f"the frontend {step} step failed (exit {result.returncode}); see the lines above"
        )


def _run(command: list[str], *, env: dict[str, str], cwd: str | Path) -> None:
    result = subprocess.run(command, env=env, cwd=cwd, check=False)
    if result.returncode != 0:
        raise FrontendError(
            f"{Path(command[0]).name} {' '.join(command[1:3])} failed "
            f"(exit {result.returncode}); see the lines above"
        )


if __name__ == "__main__":
    # The parent read rxconfig.py at the edge and named each field the runtime overrides.
    logging.getLogger("working.rxconfig").setLevel(logging.ERROR)
    for_build()  # the app's required settings are its deployment's, not the build's
    try:
        {"build": _child_build, "check": _child_check, "lock": _child_lock}[sys.argv[1]]()
    except WorkingError as exc:
        failure = {"message": str(exc), "exit_code_name": exc.exit_code_name}
        Path(os.environ["WORKING_FRONTEND_ERROR"]).write_text(json.dumps(failure))
        sys.exit(1)
