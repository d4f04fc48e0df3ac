"""The app's own settings: the environment variables it declares in working/settings.toml.

That file is the app's, beside working.py (so the wheel and the image carry it), and has the
shape of contract.toml's `[env.NAME]` tables plus `required` and `choices`: compose.yaml,
`check-config`, the README and the tests read both files the same way. The values are checked
with the runtime's settings (settings.load), with the same one-line errors and exit 2.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .contract import contract
from .errors import ConfigError
from .masking import MASK, register_secret

FILE = "settings.toml"
# Beside working.py: the app's package is the runtime's parent.
PATH = Path(__file__).resolve().parents[1] / FILE
# How errors name the file: as the user sees it in the repository.
SHOWN = f"{PATH.parent.name}/{FILE}"

_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_FLAGS = ("secret", "empty_ok", "required")
_KEYS = ("default", "help", *_FLAGS, "choices")
# What a default may hold and still be written bare in compose.yaml: `}` would end the
# `${NAME:-...}`, `$` would start another variable, and YAML reads `: ` or ` #` as structure.
_BARE = re.compile(r"(?!.*: )[A-Za-z0-9 ._/,+=@%:*-]*")


@dataclass(frozen=True)
class AppSetting:
    name: str
    help: str
    default: str = ""
    secret: bool = False
    empty_ok: bool = False
    required: bool = False
    choices: tuple[str, ...] = ()

    def compose_value(self) -> str:
        """Its value in compose.yaml's `environment:`, read the way the runtime's are: required
        is a bare `${NAME:?}` (Coolify reads text after `:?` as a prefilled value), a blank
        takes the default unless blank has a meaning here (`empty_ok`). Coolify's parser knows
        all three operators (`:-`, `-`, `:?`): it offers NAME, prefilled with the default."""
        if self.required:
            return f"${{{self.name}:?}}"
        operator = "-" if self.empty_ok and self.default else ":-"
        return f"${{{self.name}{operator}{self.default}}}"


def parse(text: str, shown: str = SHOWN) -> tuple[AppSetting, ...]:
    """The declarations in `text`, in file order; a bad one is a ConfigError naming the key."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(shown, f"is not valid TOML ({exc})", "[env.NAME] tables") from None
    extra = sorted(set(document) - {"env"})
    if extra:
        raise ConfigError(shown, f"has the key {extra[0]!r}", "only [env.NAME] tables")
    tables = document.get("env", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{shown}: env", "is not a table", "[env.NAME] tables")
    return tuple(_setting(f"{shown}: [env.{name}]", name, spec) for name, spec in tables.items())


def _setting(where: str, name: str, spec: Any) -> AppSetting:
    if not _NAME.fullmatch(name):
        raise ConfigError(where, "is not a variable name", "capitals, digits and _, e.g. API_KEY")
    if name in contract()["env"]:
        raise ConfigError(where, "is the runtime's setting", "another name (README, Settings)")
    if not isinstance(spec, dict):
        raise ConfigError(where, "is not a table", 'a table: default = "...", help = "..."')
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        raise ConfigError(where, f"has the unknown key {unknown[0]!r}", " | ".join(_KEYS))
    for key in ("default", "help"):
        if not isinstance(spec.get(key, ""), str):
            raise ConfigError(f"{where} {key}", f"is {spec[key]!r}", "a string in quotes")
    for key in _FLAGS:
        if not isinstance(spec.get(key, False), bool):
            raise ConfigError(f"{where} {key}", f"is {spec[key]!r}", "true or false")
    choices = spec.get("choices", [])
    if not isinstance(choices, list) or not all(isinstance(c, str) and c for c in choices):
        raise ConfigError(f"{where} choices", f"is {choices!r}", 'a list like ["a", "b"]')
    setting = AppSetting(name=name, **{"help": "", **spec, "choices": tuple(choices)})
    _check_consistent(where, setting)
    return setting


def _check_consistent(where: str, s: AppSetting) -> None:
    if not s.help.strip():
        raise ConfigError(where, "has no help", 'help = "what it sets" (README, check-config)')
    if s.required and (s.default or s.empty_ok):
        other = "a default" if s.default else "empty_ok"
        raise ConfigError(where, f"is required and has {other}", "one of the two")
    if s.secret and s.default:
        # compose.yaml and the README show every default.
        raise ConfigError(where, "is secret and has a default", "no default for a secret")
    if not _BARE.fullmatch(s.default):
        raise ConfigError(
            f"{where} default", f"is {s.default!r}", "letters, digits, spaces and ._/,+=@%:*-"
        )
    if s.choices and s.default and s.default not in s.choices:
        raise ConfigError(f"{where} default", f"is {s.default!r}", " | ".join(s.choices))


@cache
def declared() -> tuple[AppSetting, ...]:
    """The app's declarations, read once; an app without the file declares none."""
    if not PATH.is_file():
        return ()
    return parse(PATH.read_text())


def load(
    environ: Mapping[str, str], settings: tuple[AppSetting, ...], *, deployed: bool = True
) -> Mapping[str, str]:
    """Each declared setting's value, checked; secrets are remembered so logs mask them.

    Not `deployed` (a build): a required setting may be missing, and reads as empty."""
    return MappingProxyType({s.name: _value(s, environ.get(s.name), deployed) for s in settings})


def _value(s: AppSetting, raw: str | None, deployed: bool) -> str:
    value = None if raw is None else raw.strip()
    if s.secret and value:
        register_secret(value)  # before any error below could carry it
    if s.required and not value and not deployed:
        return ""
    declared_in = f"declared in {SHOWN}"
    if s.required and raw is None:
        raise ConfigError(s.name, "is not set", f"a value ({s.help}); required, {declared_in}")
    if value == "" and not s.empty_ok and (s.required or s.default):
        instead = "required" if s.required else f"or no {s.name} at all for its default"
        fallback = "" if s.required else f" ({s.default})"
        raise ConfigError(
            s.name, "is set but empty", f"a value ({s.help}), {instead}{fallback}; {declared_in}"
        )
    if value is None:
        return s.default
    if s.choices and value not in s.choices:
        shown = "is not one of its choices" if s.secret else f"is {value!r}"
        raise ConfigError(s.name, shown, f"{' | '.join(s.choices)} ({declared_in})")
    return value


def masked(settings: tuple[AppSetting, ...], values: Mapping[str, str]) -> dict[str, str]:
    """For check-config: a set secret is shown as *** whole, whatever its shape (a key, a
    webhook URL whose path is the secret), never in part."""
    return {s.name: MASK if s.secret and values[s.name] else values[s.name] for s in settings}


def compose_environment(settings: tuple[AppSetting, ...]) -> str:
    """The lines for compose.yaml's `environment:` of the app service (check-config
    --compose-env), so the user never writes the forms by hand."""
    lines = [f"      # The app's own settings ({SHOWN}): `working check-config --compose-env`."]
    for s in settings:
        lines.append(f"      # {' '.join(s.help.split())}")
        lines.append(f"      {s.name}: {s.compose_value()}")
    return "\n".join(lines)
