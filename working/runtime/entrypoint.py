"""`python -m working.runtime.entrypoint` (console script `working`): what the image runs.

Each subcommand is one function; every failure a user can cause is a WorkingError, printed here
as one line with its own exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import app_settings, logs
from .contract import contract, exit_code
from .errors import FrontendError, WorkingError
from .frontend import LOCK_DIR
from .settings import Settings, for_build, from_environ, load_port

log = logging.getLogger("working")


def serve(args: argparse.Namespace) -> int:
    started = time.monotonic()
    # Start-up makes a few hundred thousand objects that live as long as the process, and no
    # garbage: collections meanwhile would only walk them again and again (a tenth of the
    # start). server.build freezes them and turns collection back on.
    gc.disable()
    settings = _settings()
    log.info(
        "starting %s %s (commit %s), env=%s, database=%s, redis=%s, workers=%d",
        contract()["service"],
        settings.app_version,
        settings.git_commit,
        settings.environment,
        settings.masked()["DATABASE_URL"],
        settings.masked()["REDIS_URL"] or "none",
        settings.web_concurrency,
    )
    # Before the database wait: what the app declares, and whether this machine can build the
    # frontend, are known at once.
    from .app import module_name

    module_name()
    build_needed = _frontend_build_needed(settings)
    _prepare_database(settings, migrate=settings.run_migrations)
    if settings.redis_url:
        from .statestore import wait_for_redis

        wait_for_redis(settings.redis_url, settings.db_wait_timeout)
    if build_needed:
        from . import frontend

        log.info(
            "no frontend export in %s: building it once (about a minute)", settings.frontend_dir
        )
        frontend.build(settings.frontend_dir, node_modules=None)

    from . import db, health, server

    if settings.web_concurrency > 1:
        # The workers open their own pools; the supervisor keeps no connection open.
        db.dispose()
    monitor = health.install(settings)
    try:
        code = server.serve(settings, monitor)
    finally:
        db.dispose()
    log.info("stopped after %.1fs (exit %d)", time.monotonic() - started, code)
    return code


def migrate(args: argparse.Namespace) -> int:
    _prepare_database(_settings(), migrate=True)
    return exit_code("ok")


def check_config(args: argparse.Namespace) -> int:
    if args.compose_env:
        # What the app declares, not what this machine's environment holds.
        print(app_settings.compose_environment(app_settings.declared()))
        return exit_code("ok")
    settings = _settings()
    from .app import module_name

    module_name()
    for name, value in settings.masked().items():
        print(f"{name}={value}")
    if settings.app_env:
        print(f"# the app's own settings ({app_settings.SHOWN})")
        for name, value in settings.app_masked().items():
            print(f"{name}={value}")
    return exit_code("ok")


def healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 when the local /livez answers 200 in time: an exec-form Docker HEALTHCHECK.

    Liveness, not /health: the container is healthy while it can serve, database or not."""
    try:
        port = load_port(os.environ)
    except WorkingError as exc:
        # Docker reserves healthcheck exit codes other than 0 and 1.
        print(f"unhealthy: {exc}")
        return 1
    # Here, not at the top: the HTTP client is a tenth of a start's imports, and serve has none.
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{port}{contract()['http']['liveness_path']}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url} did not answer: {getattr(exc, 'reason', exc)}")
        return 1
    print(f"{'ok' if status == 200 else 'unhealthy'}: {url} answered {status}")
    return 0 if status == 200 else 1


def build_frontend(args: argparse.Namespace) -> int:
    from . import frontend
    from .app import module_name

    _logging()
    for_build()
    module_name()  # rxconfig.py read before npm ci, which may take a minute and the network
    node_modules = Path(args.node_modules) if args.node_modules else None
    frontend.build(Path(args.out), node_modules=node_modules, lock_dir=Path(args.lock))
    return exit_code("ok")


def lock_frontend(args: argparse.Namespace) -> int:
    from . import frontend, reflex_config

    _logging()
    for_build()
    reflex_config.load()
    frontend.refresh_lock(Path(args.lock))
    print(f"wrote {args.lock}/package.json and package-lock.json; commit them")
    return exit_code("ok")


def new_migration(args: argparse.Namespace) -> int:
    from . import migrations, reflex_config

    for_build()
    logs.configure()
    reflex_config.load()  # an env.py that imports the app's module makes an rx.App
    written = migrations.new_revision(args.message)
    print(f"wrote {written}; read it, adjust it if needed, and commit it")
    return exit_code("ok")


def adopt_migrations(args: argparse.Namespace) -> int:
    from . import adopt
    from .app import MIGRATIONS, module_name
    from .reflex_config import rxconfig_path

    _logging()
    root = rxconfig_path().parent
    for line in adopt.adopt(root, Path(str(MIGRATIONS)), models=args.models or module_name()):
        print(line)
    return exit_code("ok")


def _settings() -> Settings:
    """For the commands that run the app's backend: its settings, and Reflex's files placed
    (uploads in DATA_DIR, nothing written into the working directory)."""
    from . import files

    settings = from_environ()
    logs.configure(settings.log_level, settings.log_format)
    files.place(settings.data_dir)
    return settings


def _frontend_build_needed(settings: Settings) -> bool:
    """False when FRONTEND_DIR holds an export; True when it can be built there (Node is here)."""
    from .static import is_export

    if is_export(settings.frontend_dir):
        return False
    if settings.frontend_dir.exists() and any(settings.frontend_dir.iterdir()):
        raise FrontendError(
            f"FRONTEND_DIR={settings.frontend_dir} is not a frontend export "
            "(no index.html and assets/); point it at one or at an empty directory"
        )
    from .nodejs import require_node_and_npm

    require_node_and_npm()
    return True


def _prepare_database(settings: Settings, *, migrate: bool) -> None:
    from . import db, migrations

    engine = db.configure(settings)
    db.wait_for_db(engine, settings.db_wait_timeout)
    if migrate:
        migrations.apply(engine)


_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "serve": (serve, "validate settings, wait for the database, migrate, serve on one port"),
    "healthcheck": (healthcheck, "exit 0 if this process can serve (/livez 200 in time), else 1"),
    "migrate": (migrate, "wait for the database, apply migrations and exit"),
    "check-config": (
        check_config,
        "validate the environment and rxconfig.py, print the settings, masked",
    ),
    "build-frontend": (build_frontend, "compile the Reflex app and write its static export"),
    "lock-frontend": (lock_frontend, "refresh the committed npm lock from the registry"),
    "new-migration": (
        new_migration,
        "write the app's next migration from its models (Alembic autogenerate)",
    ),
    "adopt-migrations": (
        adopt_migrations,
        "move a Reflex-style history (alembic.ini, alembic/) into working/migrations, once",
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=contract()["entrypoint"]["console_script"],
        description="Run the working app: one process, one port. Settings come from the "
        "environment (see README).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    subs = {}
    for name, (func, summary) in _COMMANDS.items():
        subs[name] = commands.add_parser(name, help=summary, description=summary)
        subs[name].set_defaults(func=func)

    subs["healthcheck"].add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=contract()["healthcheck"]["request_timeout_s"],
        help="how long to wait for /livez (default: %(default)s)",
    )
    subs["build-frontend"].add_argument(
        "--out", required=True, metavar="DIR", help="directory to write the static export to"
    )
    subs["build-frontend"].add_argument(
        "--node-modules",
        metavar="DIR",
        help="a node_modules provisioned from the committed lock: with it the build never "
        "uses the network (default: provision one with npm ci into ~/.cache/working)",
    )
    subs["check-config"].add_argument(
        "--compose-env",
        action="store_true",
        help="print the lines of the app's own settings (working/settings.toml) for "
        "compose.yaml's environment:, instead of checking this environment",
    )
    subs["new-migration"].add_argument(
        "-m", "--message", required=True, help='what it changes, e.g. "add greetings"'
    )
    subs["adopt-migrations"].add_argument(
        "--models",
        metavar="MODULE",
        help="the module whose import defines the app's rx.Model tables, for env.py "
        "(default: the app's module, as rxconfig.py names it)",
    )
    for name in ("build-frontend", "lock-frontend"):
        subs[name].add_argument(
            "--lock",
            metavar="DIR",
            default=str(LOCK_DIR),
            help="the committed npm lock (default: %(default)s)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([contract()["entrypoint"]["default_command"], *(argv or [])])
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except WorkingError as exc:
        _fatal(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return exit_code("ok")
    except Exception as exc:
        log.exception("unexpected error: %s", exc)
        return exit_code("error")


def _fatal(message: str) -> None:
    _logging()
    log.error("%s", message)


def _logging() -> None:
    """The commands that read no settings still print the runtime's one-line form."""
    if not logging.getLogger().handlers:
        logs.configure()


if __name__ == "__main__":
    sys.exit(main())
