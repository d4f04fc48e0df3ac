"""What the benchmarks run: the workspace (export, PostgreSQL, a Reflex project dir, a
Caddyfile) and the command line of each contender."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .procs import BenchError, Proc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from cluster import Redis  # noqa: E402

from services import Postgres, base_env, free_port  # noqa: E402

WORKING = "working"  # this project's `working serve`
REFLEX = "reflex"  # `reflex run --env prod`, what the old entrypoint.sh ran
GRANIAN = "granian"  # Granian: the same ASGI app, the export on its Rust static mount
CADDY = "caddy"  # Caddy from Debian serving the export (static only)
# `working serve` with WEB_CONCURRENCY=2 and its state on Redis (events and memory only): is a
# second worker worth its memory on this machine?
WORKING_2 = "working-2w"
ALL = (WORKING, REFLEX, GRANIAN, CADDY, WORKING_2)
APP_SERVERS = (WORKING, REFLEX, GRANIAN, WORKING_2)  # those that serve /_event and start the app
EVENTS_ONLY = (WORKING_2,)

# Reflex's own prod path rebuilds the frontend with npm at every start; npm must not prompt,
# audit or check for updates, and Reflex must use npm from PATH rather than download bun.
_REFLEX_ENV = {
    "REFLEX_USE_NPM": "1",
    "REFLEX_CHECK_LATEST_VERSION": "false",
    "REFLEX_TELEMETRY_ENABLED": "false",
    "NO_COLOR": "1",
    "npm_config_fund": "false",
    "npm_config_audit": "false",
    "npm_config_update_notifier": "false",
    "npm_config_prefer_offline": "true",
}


@dataclass
class Workspace:
    root: Path
    export: Path
    postgres: Postgres
    database_url: str
    reflex_dir: Path
    logs: Path
    # The runtime venv (`uv sync --no-dev --no-editable`, what the image ships): the app
    # servers run from it, so no test or bench dependency is imported at start.
    venv: Path
    redis: Redis | None = None

    @property
    def python(self) -> str:
        return _python(self.venv)

    @property
    def reflex_client_dir(self) -> Path:
        """The export `reflex run --env prod` builds and serves (its own hashed names)."""
        return self.reflex_dir / ".web" / "build" / "client"

    def close(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        self.postgres.destroy()


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def prepare(
    root: Path | None, export: Path | None, contenders: tuple[str, ...], timeout: float
) -> Workspace:
    """Build what the contenders need: the export, PostgreSQL (migrated), the Reflex dir."""
    root = Path(root or tempfile.mkdtemp(prefix="working-bench-")).absolute()
    root.mkdir(parents=True, exist_ok=True)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    if export is None:
        export = root / "export"
        log(f"building the frontend export into {export}")
        _run(
            [
                sys.executable,
                "-m",
                "working.runtime.entrypoint",
                "build-frontend",
                "--out",
                str(export),
            ],
            cwd=REPO,
            log=logs / "build-frontend.log",
            timeout=timeout,
        )
    venv = root / "runtime-venv"
    log(f"installing the runtime venv (no dev dependencies) into {venv}")
    runtime_venv(venv, timeout)
    log("starting PostgreSQL")
    pg = Postgres()
    pg.init()
    url = pg.url()
    ws = Workspace(root, export.absolute(), pg, url, root / "reflex", logs, venv)
    _run(
        [ws.python, "-m", "working.runtime.entrypoint", "migrate"],
        cwd=root,
        log=logs / "migrate.log",
        timeout=120,
        env=base_env(DATABASE_URL=url, DATA_DIR=str(root / "data")),
    )
    if REFLEX in contenders:
        _prepare_reflex(ws, timeout)
    if WORKING_2 in contenders:
        log("starting Redis")
        ws.redis = Redis(root)
        ws.redis.start()
    return ws


def runtime_venv(venv: Path, timeout: float) -> None:
    """The dependencies from uv.lock without the dev group, and this checkout's package
    installed as a wheel would be (reinstalled every run: the source may have changed)."""
    uv = shutil.which("uv") or "uv"
    # Byte-compiled at install, as the image's venv is (pyproject.nix compiles by default):
    # otherwise the first start of each contender would pay for compiling everything.
    compiled = ["--compile-bytecode"]
    into = ["--python", _python(venv)]
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    for cmd in (
        [uv, "sync", "--frozen", "--no-dev", "--no-editable", "--no-install-project", *compiled],
        [uv, "pip", "install", "--no-deps", "--reinstall", *compiled, *into, "."],
    ):
        result = subprocess.run(
            cmd,
            cwd=REPO,
            env={**env, "UV_PROJECT_ENVIRONMENT": str(venv)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise BenchError(
                f"{' '.join(cmd[:3])} exited {result.returncode}: {result.stderr[-500:]}"
            )


def _python(venv: Path) -> str:
    return str(venv / "bin" / "python")


def _prepare_reflex(ws: Workspace, timeout: float) -> None:
    """A Reflex project dir for the installed app (its rxconfig names app `working`, whose
    module is the installed `working.working`); a first `reflex run --env prod` initializes
    `.web` and installs node_modules (npm, preferring its cache), as the old image build did."""
    ws.reflex_dir.mkdir(exist_ok=True)
    shutil.copyfile(REPO / "rxconfig.py", ws.reflex_dir / "rxconfig.py")
    if (ws.reflex_client_dir / "index.html").is_file():
        return
    log("first `reflex run --env prod`: initializing .web and installing node_modules")
    proc = contender(REFLEX, ws, free_port()).start()
    try:
        proc.wait_ready(timeout)
    finally:
        proc.stop()
    if not (ws.reflex_client_dir / "index.html").is_file():
        raise BenchError(f"reflex run built no {ws.reflex_client_dir}/index.html")


def _app_env(ws: Workspace, port: int, **extra: str) -> dict[str, str]:
    return base_env(
        PORT=str(port),
        DATABASE_URL=ws.database_url,
        DATA_DIR=str(ws.root / "data"),
        FRONTEND_DIR=str(ws.export),
        # The event workloads sign up hundreds of tabs from one address before they measure:
        # the per-client log-in rate (issue #12) is not what they measure.
        LOGIN_RATE="100000",
        LOGIN_RATE_TOTAL="100000",
        LOGIN_QUEUE="1000",
        **extra,
    )


def contender(name: str, ws: Workspace, port: int) -> Proc:
    """The process of one contender on `port` (not started)."""
    logfile = ws.logs / f"{name}.log"
    if name == WORKING:
        return Proc(
            name,
            [ws.python, "-m", "working.runtime.entrypoint", "serve"],
            # Every simulated browser comes from this one address.
            _app_env(ws, port, MAX_CONNECTIONS_PER_CLIENT="100000"),
            port,
            ws.root,
            logfile,
            ("/health",),
        )
    if name == WORKING_2:
        assert ws.redis is not None
        return Proc(
            name,
            [ws.python, "-m", "working.runtime.entrypoint", "serve"],
            _app_env(
                ws,
                port,
                MAX_CONNECTIONS_PER_CLIENT="100000",
                WEB_CONCURRENCY="2",
                REDIS_URL=ws.redis.url,
            ),
            port,
            ws.root,
            logfile,
            ("/health",),
        )
    if name == REFLEX:
        reflex = ws.venv / "bin" / "reflex"
        env = _app_env(ws, port, **_REFLEX_ENV)
        # The app has no /health under Reflex's server: /ping is Reflex's own, and / is
        # the frontend it has just rebuilt (both come up together, in one process).
        return Proc(
            name,
            [str(reflex), "run", "--env", "prod"],
            env,
            port,
            ws.reflex_dir,
            logfile,
            ("/ping", "/"),
        )
    if name == GRANIAN:
        cmd = [
            ws.python,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
            "--static-path-route",
            "/assets",
            "--static-path-mount",
            str(ws.export / "assets"),
            "bench.granian_app:app",
        ]
        env = _app_env(ws, port, PYTHONPATH=str(REPO))
        return Proc(name, cmd, env, port, ws.root, logfile, ("/health",))
    if name == CADDY:
        caddy = shutil.which("caddy")
        if caddy is None:
            raise BenchError("caddy is not installed: apt-get install -y caddy")
        conf = ws.root / "caddy" / f"Caddyfile.{port}"
        conf.parent.mkdir(exist_ok=True)
        conf.write_text(_caddyfile(ws.export, port))
        env = base_env(
            XDG_DATA_HOME=str(conf.parent / "data"), XDG_CONFIG_HOME=str(conf.parent / "config")
        )
        cmd = [caddy, "run", "--config", str(conf), "--adapter", "caddyfile"]
        return Proc(name, cmd, env, port, conf.parent, logfile, ("/",))
    raise BenchError(f"unknown contender {name!r}; expected one of {', '.join(ALL)}")


def _caddyfile(export: Path, port: int) -> str:
    # Compression as Reflex's single-port Docker examples configure it, plus the .br/.gz files
    # the export ships (Caddy serves a precompressed sibling when the client accepts it).
    return f"""{{
\tadmin off
\tauto_https off
}}
http://127.0.0.1:{port} {{
\troot * {export}
\tencode zstd gzip
\tfile_server {{
\t\tprecompressed br gzip
\t}}
}}
"""


def largest_js(directory: Path) -> str:
    """The URL path of the largest JavaScript asset under `directory`/assets."""
    assets = [p for p in (directory / "assets").glob("*.js") if p.is_file()]
    if not assets:
        raise BenchError(f"no JavaScript assets in {directory}/assets")
    return "/assets/" + max(assets, key=lambda p: p.stat().st_size).name


def _run(
    cmd: list[str], *, cwd: Path, log: Path, timeout: float, env: dict[str, str] | None = None
) -> None:
    with log.open("ab") as out:
        result = subprocess.run(
            cmd,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            env=env or os.environ.copy(),
            check=False,
        )
    if result.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:4])} ... exited {result.returncode}; see {log}")
