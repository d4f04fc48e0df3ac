"""An app's Reflex-style Alembic history (`reflex db init`), moved into the app's package.

`reflex db init` leaves `alembic.ini` and `alembic/` at the project root, beside rxconfig.py.
The image holds the app's package and rxconfig.py only, and a top-level `alembic/` would shadow
the alembic library if it were installed beside them; so the runtime's history lives in
`working/migrations/`. `working adopt-migrations` moves the revisions there once, unchanged
(their ids are what the app's database records in alembic_version), and writes the two files
the runtime's runner needs. Reflex's own env.py is not used by Reflex either: `reflex db
migrate` drives Alembic with its own connection (reflex 0.9.2, reflex/model.py
`_alembic_upgrade`), as the runtime does.
"""

from __future__ import annotations

import configparser
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, WorkingError

_ENV_PY = '''"""Alembic's environment for the app's history, run by the runtime's migrations.

The app's rx.Model tables are SQLModel's metadata once the module defining them is imported.
"""

import sqlmodel

import {models}  # noqa: F401  (defines the app's rx.Model tables)
from working.runtime.migrations import run_env

run_env(sqlmodel.SQLModel.metadata)
'''


@dataclass(frozen=True)
class ReflexHistory:
    ini: Path
    versions: Path

    def revisions(self) -> list[Path]:
        return sorted(self.versions.glob("*.py")) if self.versions.is_dir() else []


def find_reflex_history(root: Path) -> ReflexHistory | None:
    """The history `reflex db init` made beside rxconfig.py, if there is one."""
    ini = root / "alembic.ini"
    if not ini.is_file():
        return None
    # %(here)s is the file's own directory, as Alembic defines it.
    parser = configparser.ConfigParser(defaults={"here": str(ini.parent)})
    try:
        parser.read(ini)
        location = parser.get("alembic", "script_location", fallback="alembic")
    except configparser.Error as exc:
        raise ConfigError(
            str(ini), f"is not an Alembic config ({exc.message})", "an [alembic] section"
        ) from None
    return ReflexHistory(ini, (ini.parent / location / "versions").resolve())


def refuse_unadopted(root: Path, runtime_history: Path) -> None:
    """An app whose history is still Reflex-style would start with its tables missing."""
    history = find_reflex_history(root)
    if history is None or (runtime_history / "env.py").is_file():
        return
    where = history.versions
    shown = where.relative_to(root) if where.is_relative_to(root) else where
    raise ConfigError(
        f"{history.ini.name} and {len(history.revisions())} revision(s) in {shown}",
        "are a Reflex-style Alembic history, which the image does not hold",
        "the history in working/migrations/: run `uv run working adopt-migrations` once and "
        "commit the result (docs/your-app.md, section 6)",
    )


def adopt(root: Path, target: Path, models: str) -> list[str]:
    """Move the Reflex-style history under `root` into `target`; the lines to print."""
    history = find_reflex_history(root)
    if history is None:
        raise WorkingError(f"no alembic.ini in {root}: there is no Reflex-style history to adopt")
    if (target / "env.py").is_file():
        raise WorkingError(
            f"{target}/env.py exists: the app already has the runtime's history; "
            f"move the revisions of {history.versions} by hand if both are wanted"
        )
    revisions = history.revisions()
    (target / "versions").mkdir(parents=True, exist_ok=True)
    for script in revisions:
        shutil.move(str(script), target / "versions" / script.name)
    (target / "env.py").write_text(_ENV_PY.format(models=models))
    old_dir = history.versions.parent
    # The template `reflex db init` left (Alembic's generic one), or that one if it is gone.
    template = old_dir / "script.py.mako"
    if not template.is_file():
        import alembic

        template = Path(alembic.__file__).parent / "templates" / "generic" / "script.py.mako"
    shutil.copyfile(template, target / "script.py.mako")
    history.ini.unlink()
    shutil.rmtree(old_dir, ignore_errors=True)
    return [
        f"moved {len(revisions)} revision(s) from {history.versions} to {target / 'versions'}",
        f"wrote {target / 'env.py'} (SQLModel's metadata, from {models}) and script.py.mako",
        f"removed {history.ini} and {old_dir}: Reflex's env.py is not used, the runtime migrates",
        "review, then commit: git add -A working/migrations alembic.ini alembic",
    ]
