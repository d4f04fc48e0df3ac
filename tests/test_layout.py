"""The runtime apart from the app: the import graph, the seam, and the app's own migrations.

working/runtime/ reaches the app only through working/runtime/app.py (docs/your-app.md); an app
of your own replaces the rest of the package. tests/test_your_app.py serves a second app with
the same runtime; these tests hold the boundary itself.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from margins import within

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "working"
RUNTIME = PACKAGE / "runtime"
SEAM = RUNTIME / "app.py"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, module: str) -> set[str]:
    """Every module the `module`'s source imports, anywhere (functions too), as absolute names."""
    package = module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # `from . import db` imports the module working.runtime.db.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _app_imports(path: Path, source: str | None = None) -> set[str]:
    """The app's modules (`working.X`, X not the runtime) that `path` imports from."""
    text = path.read_text() if source is None else source
    return {
        ".".join(name.split(".")[:2])
        for name in _imports(text, _module_name(path))
        if (name == "working" or name.startswith("working."))
        and name != "working.runtime"
        and not name.startswith("working.runtime.")
        # `from working import working` names the package itself as well as the module.
        and name != "working"
    }


def test_the_runtime_imports_nothing_of_the_app_but_through_its_seam() -> None:
    crossing = {
        str(path.relative_to(REPO)): sorted(_app_imports(path))
        for path in sorted(RUNTIME.rglob("*.py"))
        if _app_imports(path)
    }
    # The seam imports the app by the name rxconfig.py gives it, never by a fixed import.
    assert crossing == {}
    assert "importlib.import_module(name)" in SEAM.read_text()


def test_the_graph_reader_sees_relative_and_nested_imports() -> None:
    # The check above is only as good as _imports: a runtime module that reached the app by a
    # relative import inside a function, or by an absolute one, must be seen.
    source = (
        "def f():\n    from .. import auth\n    from ..notes import x\n    import working.login\n"
    )
    assert _app_imports(RUNTIME / "server.py", source) == {
        "working.auth",
        "working.notes",
        "working.login",
    }
    assert _app_imports(RUNTIME / "server.py", "from . import db\nfrom .app import load\n") == set()


def test_importing_the_whole_runtime_loads_no_app_module() -> None:
    # The graph as Python walks it: every runtime module imported, nothing of the app comes
    # along (the seam imports the app only when the server asks for it).
    modules = sorted(_module_name(p) for p in RUNTIME.glob("*.py"))
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('working.')"
        " and not m.startswith('working.runtime')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# What `reflex init` writes, and what an app deployed elsewhere typically adds: its own ports,
# the host it was served on, its database. Both forms of rxconfig.py must get the same policy.
_FOREIGN_FIELDS = (
    "    frontend_port=3001,\n"
    "    backend_port=8000,\n"
    '    api_url="https://www.example.com",\n'
    '    db_url="postgresql://u:s3cret@db.example/app",\n'
    '    state_manager_mode="disk",\n'
)
_RXCONFIG_FORMS = {
    "rx.Config": 'config = rx.Config(\n    app_name="working",\n' + _FOREIGN_FIELDS + ")\n",
    "app_config": "config = app_config(\n" + _FOREIGN_FIELDS + ")\n",
}


@pytest.mark.parametrize("form", sorted(_RXCONFIG_FORMS))
def test_rxconfig_in_either_form_gets_the_runtimes_fields_and_a_line_for_each_it_overrode(
    tmp_path: Path, form: str
) -> None:
    root = _app_copy(tmp_path)
    (root / "rxconfig.py").write_text(
        "import reflex as rx\n\nfrom working.runtime.reflex_config import app_config\n\n"
        + _RXCONFIG_FORMS[form]
    )
    probe = (
        "import json\n"
        "from working.runtime import logs, reflex_config\n"
        "from reflex_base.config import get_config\n"
        "logs.configure()\n"
        "reflex_config.load()\n"
        "first = get_config()\n"
        "again = get_config(reload=True)\n"  # Reflex re-imports rxconfig.py when an App is made
        "print(json.dumps([{k: str(getattr(c, k)) for k in ('frontend_port', 'backend_port',"
        " 'api_url', 'deploy_url', 'db_url', 'state_manager_mode')} for c in (first, again)]))\n"
    )
    out = _python(root, "-c", probe, PORT="3999")
    assert out.returncode == 0, out.stderr
    import json

    configs = json.loads(out.stdout.splitlines()[-1])
    for seen in configs:
        assert seen["frontend_port"] == seen["backend_port"] == "3999", seen
        assert seen["api_url"] == seen["deploy_url"] == "http://localhost:3999", seen
        assert seen["db_url"] == f"sqlite:///{root}/data/working.db", seen
        assert seen["state_manager_mode"].lower().endswith("memory"), seen
    output = out.stdout + out.stderr
    warnings = [line for line in output.splitlines() if line.startswith("[WARN] rxconfig.py")]
    # Once each, though the module ran twice; the password never shown.
    assert sorted(w.split()[3].split("=")[0] for w in warnings) == sorted(
        ["frontend_port", "backend_port", "api_url", "db_url", "state_manager_mode"]
    ), out.stderr
    assert any("api_url='https://www.example.com'; ignored" in w for w in warnings)
    assert any("set DATABASE_URL" in w and "u:***@db.example" in w for w in warnings)
    assert "s3cret" not in out.stdout + out.stderr


def test_an_rxconfig_that_matches_the_runtime_says_nothing(tmp_path: Path) -> None:
    root = _app_copy(tmp_path)
    out = _working(root, "check-config", PORT="3000")
    assert out.returncode == 0, out.stderr
    assert "[WARN]" not in out.stdout + out.stderr


_BAD_RXCONFIGS = {
    # An app the runtime cannot find: named, at once, with where it must be.
    "app_name": (
        'config = rx.Config(app_name="myapp", db_url="postgresql://u:s3cret@db.example/app")\n',
        "[ERROR] rxconfig.py names the app 'myapp.myapp' but there is no myapp/myapp.py; "
        "expected the app's package beside rxconfig.py",
    ),
    # Code that does not run: where, what, and how to see the whole traceback.
    "raises": (
        "config = app_config(plugins=[rx.plugins.NoSuchPlugin()])\n",
        "[ERROR] rxconfig.py line 4 raised AttributeError: ",
    ),
    "no config": (
        "settings = app_config()\n",
        "[ERROR] rxconfig.py defines no Reflex config (config is NoneType)",
    ),
}


@pytest.mark.parametrize("case", sorted(_BAD_RXCONFIGS))
def test_a_bad_rxconfig_is_one_line_and_exit_2_before_anything_waits_or_builds(
    tmp_path: Path, case: str
) -> None:
    source, expected = _BAD_RXCONFIGS[case]
    root = _app_copy(tmp_path)
    (root / "rxconfig.py").write_text(
        "import reflex as rx\n\nfrom working.runtime.reflex_config import app_config\n" + source
    )
    # A database that never answers, waited for up to a minute: the error must come first.
    unreachable = "postgresql://app:dbpass@127.0.0.1:9/app"
    build = ("build-frontend", "--out", str(tmp_path / "export"))
    for command in (("serve",), ("check-config",), build):
        started = time.monotonic()
        out = _working(root, *command, DATABASE_URL=unreachable, DB_WAIT_TIMEOUT="60")
        output = out.stdout + out.stderr
        assert out.returncode == 2, output
        assert time.monotonic() - started < within(30), output
        errors = [line for line in output.splitlines() if line.startswith("[ERROR]")]
        assert len(errors) == 1, output
        assert errors[0].startswith(expected), output
        assert "Traceback" not in output
        assert "not reachable" not in output
        assert "s3cret" not in output
        assert "dbpass" not in output


# --- the app's migrations: written by new-migration, applied by the runtime ------------------

_GREETINGS_MODEL = """

class Greeting(Base):
    __tablename__ = "greetings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(200))
"""


def _app_copy(root: Path) -> Path:
    """This app and its runtime as a project of its own, first on PYTHONPATH (a user's clone)."""
    shutil.copytree(PACKAGE, root / "working", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(REPO / "rxconfig.py", root / "rxconfig.py")
    return root


def _env(root: Path, **env_vars: str) -> dict[str, str]:
    from services import base_env

    return base_env(PYTHONPATH=str(root), DATA_DIR=str(root / "data"), **env_vars)


def _working(root: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    return _python(root, "-m", "working.runtime.entrypoint", *args, **env_vars)


def _python(root: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """This Python with `args` in `root`, the app's tree first on PYTHONPATH."""
    return subprocess.run(
        [sys.executable, *args],
        env=_env(root, **env_vars),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_new_migration_writes_the_apps_next_revision_and_the_runtime_applies_it(
    tmp_path: Path,
) -> None:
    root = _app_copy(tmp_path)
    versions = root / "working" / "migrations" / "versions"
    shipped = sorted(p.name for p in versions.glob("*.py"))

    unchanged = _working(root, "new-migration", "-m", "nothing")
    assert unchanged.returncode == 1
    assert "already agree: no revision written" in unchanged.stdout + unchanged.stderr

    with (root / "working" / "models.py").open("a") as models:
        models.write(_GREETINGS_MODEL)
    made = _working(root, "new-migration", "-m", "add greetings")
    assert made.returncode == 0, made.stdout + made.stderr
    new = sorted(set(p.name for p in versions.glob("*.py")) - set(shipped))
    number = f"{len(shipped) + 1:04d}"
    assert new == [f"{number}_add_greetings.py"], made.stdout
    written = (versions / new[0]).read_text()
    assert 'op.create_table(\n        "greetings"' in written or "'greetings'" in written, written
    assert f'revision = "{number}"' in written or f"revision = '{number}'" in written

    applied = _working(root, "migrate")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"migrations: applied empty -> {number}" in applied.stdout + applied.stderr

    import sqlite3

    with sqlite3.connect(root / "data" / "working.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "greetings" in tables


def test_an_app_without_migrations_starts_without_them(tmp_path: Path) -> None:
    root = _app_copy(tmp_path)
    shutil.rmtree(root / "working" / "migrations")
    result = _working(root, "migrate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "migrations: the app ships none" in result.stdout + result.stderr
    made = _working(root, "new-migration", "-m", "first")
    assert made.returncode == 1
    assert "the app ships no migrations" in made.stdout + made.stderr


@pytest.mark.slow
@pytest.mark.network
def test_a_plain_rx_config_with_its_own_domain_builds_a_bundle_that_calls_its_own_origin(
    tmp_path: Path,
) -> None:
    """What `reflex init` writes plus a production api_url: the bundle must not be bound to it."""
    root = _app_copy(tmp_path)
    rxconfig = root / "rxconfig.py"
    rxconfig.write_text(
        rxconfig.read_text().replace(
            "config = app_config(",
            'config = rx.Config(\n    app_name="working",\n    api_url="https://www.example.com",\n'
            "    frontend_port=3000,\n    backend_port=8000,\n",
        )
    )
    export = tmp_path / "export"
    lock = REPO / "nix" / "frontend"
    result = _working(root, "build-frontend", "--out", str(export), "--lock", str(lock))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert "rxconfig.py sets api_url='https://www.example.com'; ignored" in output
    assert "rxconfig.py sets backend_port=8000; ignored" in output
    baked = [p for p in export.rglob("*") if p.is_file() and b"example.com" in p.read_bytes()]
    assert baked == [], baked
    env_modules = list(export.rglob("reflex-env*.js"))
    assert env_modules, sorted(str(p.relative_to(export)) for p in export.rglob("*.js"))[:20]
    # localhost is what Reflex's state.js swaps for the page's own host (getBackendURL).
    assert all(b"ws://localhost:3000/_event" in p.read_bytes() for p in env_modules)


def test_the_console_script_runs_the_contracts_entrypoint_module() -> None:
    # The module moved with the runtime: the contract names it (Nix reads it there), and the
    # console script every doc and compose file uses must run the same one.
    import tomllib

    from working.runtime.contract import contract

    entrypoint = contract()["entrypoint"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {entrypoint["console_script"]: f"{entrypoint['module']}:main"}
    assert (REPO / Path(*entrypoint["module"].split("."))).with_suffix(".py").is_file()


def test_an_app_keeps_its_own_package_name_and_the_wheel_must_hold_it(tmp_path: Path) -> None:
    """rxconfig.py's app_name is the app (Reflex's `<app_name>/<app_name>.py`); in a checkout,
    the wheel that becomes the image must ship that package, or the start says so at once."""
    root = tmp_path
    shutil.copytree(
        RUNTIME, root / "working" / "runtime", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "working" / "__init__.py").write_text("")
    (root / "myapp").mkdir()
    (root / "myapp" / "__init__.py").write_text("")
    (root / "myapp" / "myapp.py").write_text(
        "import reflex as rx\n\napp = rx.App()\napp.add_page(lambda: rx.text('mine'), route='/')\n"
    )
    (root / "rxconfig.py").write_text(
        "import reflex as rx\n\nconfig = rx.Config(app_name='myapp', "
        "disable_plugins=[rx.plugins.SitemapPlugin])\n"
    )
    pyproject = '[tool.hatch.build.targets.wheel]\npackages = ["working"{}]\n'
    (root / "pyproject.toml").write_text(pyproject.format(""))
    refused = _working(root, "check-config")
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, output
    errors = [line for line in output.splitlines() if line.startswith("[ERROR]")]
    assert errors == [
        "[ERROR] pyproject.toml: [tool.hatch.build.targets.wheel] packages is ['working'], "
        "without the app's package 'myapp' (rxconfig.py's app_name); expected "
        "['working', 'myapp'], so that the wheel and the image hold the app"
    ], output

    (root / "pyproject.toml").write_text(pyproject.format(', "myapp"'))
    assert _working(root, "check-config").returncode == 0
    # The seam loads it by that name.
    probe = "from working.runtime import app; print(app.load().__class__.__name__)"
    loaded = _python(root, "-c", probe)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip().splitlines()[-1] == "App"
