"""The runtime contract (contract.toml), read once.

Nix reads the same file with `builtins.fromTOML`, and the tests check compose.yaml and the
README against it, so a port, a path or a variable name is written down exactly once.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any


@cache
def contract() -> dict[str, Any]:
    return tomllib.loads(resources.files(__package__).joinpath("contract.toml").read_text())


def env_default(name: str) -> str:
    return str(contract()["env"][name]["default"])


def exit_code(name: str) -> int:
    return int(contract()["exit_codes"][name])
