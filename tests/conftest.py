"""Shared fixtures: real services (PostgreSQL, a built frontend export, `working serve`, a
migrated database); and the CI no-skip rule."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import margins
import pytest
from pytest_check import expected_skips, skip_problems
from slow_clients import export_with_large_asset as _with_large_asset
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from services import REPO, Postgres, Server, base_env, free_port
from working.runtime import db, migrations
from working.runtime.settings import load

# In CI a test that needs a real service or browser must run: a skip there is a failure.
# The one exception is `nix_sources`: copies of nixpkgs.lib, pyproject.nix and uv2nix that no
# CI run can download (tests/test_nix.py says how to get them).
_MUST_RUN = {"postgres", "redis", "browser", "nix", "privileged", "docker"}
_counter = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    try:
        margins.load()
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that drives Chromium needs the `browser` marker, which the Nix check deselects by:
    # given here from the fixture it asks for, it cannot be forgotten.
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    _check_the_accepted_skips(session, reporter)
    if not os.environ.get("CI"):
        return
    skipped = [
        r
        for r in reporter.stats.get("skipped", [])
        if _MUST_RUN & set(getattr(r, "keywords", {}))
        and "nix_sources" not in getattr(r, "keywords", {})
    ]
    if skipped:
        reporter.write_line(f"CI: {len(skipped)} test(s) needing a real service were skipped:")
        for report in skipped:
            reporter.write_line(f"  {report.nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _check_the_accepted_skips(session: pytest.Session, reporter: Any) -> None:
    """Inside `checks.pytest` (and its rehearsal, tests/sandbox_check.py): only the skips that
    nix/pytest-check.toml lists."""
    expected = expected_skips()
    if expected is None:
        return
    skipped = {}
    for report in reporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        skipped[report.nodeid] = reason
    collected = {item.nodeid for item in session.items}
    problems = skip_problems(collected, skipped, expected)
    if problems:
        reporter.write_line(f"checks.pytest: {len(problems)} skip(s) differ from the list:")
        for problem in problems:
            reporter.write_line(f"  {problem}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    server.init()
    yield server
    server.destroy()


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    name = f"t{os.getpid()}_{next(_counter)}"
    postgres.create_database(name)
    return postgres.url(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The same suite against the SQLite default and a real PostgreSQL."""
    env = {"DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("pg_url")
    return env


# What a headless Chromium needs on a machine with no network beyond loopback.
_CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator:  # type: ignore[type-arg]
    """Debian's Chromium driven by Playwright (its own browser download cannot work here).

    Per module: Playwright's sync API keeps an event loop running on the main thread, which
    would stop later modules from calling asyncio.run()."""
    path = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if path is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, headless=True, args=_CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def engine(database_env: dict[str, str]) -> Iterator[Engine]:
    """The test's database (SQLite or PostgreSQL, from database_env), migrated to head."""
    eng = db.create(load(database_env))
    migrations.apply(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def tx(engine: Engine):  # type: ignore[no-untyped-def]
    """Run a function in its own committed transaction, as each Reflex event does."""
    sessions = sessionmaker(engine, expire_on_commit=False)

    def run(fn, *args):  # type: ignore[no-untyped-def]
        with sessions.begin() as s:
            return fn(s, *args)

    return run


@pytest.fixture(scope="session")
def frontend_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static export, built once per session by the same command the image build runs."""
    prebuilt = os.environ.get("WORKING_TEST_FRONTEND")
    if prebuilt:
        return Path(prebuilt)
    out = tmp_path_factory.mktemp("frontend") / "export"
    subprocess.run(
        [sys.executable, "-m", "working.runtime.entrypoint", "build-frontend", "--out", str(out)],
        cwd=REPO,
        check=True,
    )
    return out


@pytest.fixture
def serve(frontend_export: Path, tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """`serve(**env)` starts a real `working serve` on a free port (stopped at teardown)."""
    servers: list[Server] = []

    def start(**env: str) -> Server:
        port = free_port()
        settings = {
            "PORT": str(port),
            "FRONTEND_DIR": str(frontend_export),
            "DATA_DIR": str(tmp_path / "data"),
            **env,
        }
        server = Server(base_env(**settings), port, cwd=tmp_path).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine and the compose plugin (.ci/run installs and starts both)."""
    from containers import engine_problem

    problem = engine_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="session")
def standin_image(
    docker_engine: None, frontend_export: Path, tmp_path_factory: pytest.TempPathFactory
):  # type: ignore[no-untyped-def]
    """The stand-in for the Nix image (tests/docker_image.py), built and loaded once."""
    import docker_image

    return docker_image.build(tmp_path_factory.mktemp("standin"), frontend_export)


@pytest.fixture
def export_with_large_asset(frontend_export: Path, tmp_path: Path) -> Path:
    return _with_large_asset(frontend_export, tmp_path / "export")
