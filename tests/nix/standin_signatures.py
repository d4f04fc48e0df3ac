"""standin-signatures.json -> signatures.nix: one real lambda per recorded nixpkgs function.

Nix cannot build a function with formal arguments from data, and code such as pyproject.nix calls
`builtins.functionArgs` on them (which a functor does not satisfy), so the stand-ins' argument
patterns are written out as Nix source:

    "fakeNss" = impl: { lib, symlinkJoin, ..., extraPasswdLines ? null, ... }@args: impl args;

Calling one with an argument outside the pattern, or without a required one, fails with Nix's own
error; the comment above each line names the source file and revision it was read from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def render(signatures: dict) -> str:
    lines = ["# Generated from standin-signatures.json by standin_signatures.py.", "{"]
    for name, sig in sorted(signatures["functions"].items()):
        formals = [
            f"{arg} ? null" if has_default else arg for arg, has_default in sig["formals"].items()
        ]
        if sig["ellipsis"]:
            formals.append("...")
        where = f"{sig.get('repo', 'NixOS/nixpkgs')}:{sig['source']}" + (
            f" at {sig['rev']}" if sig["rev"] else " (not read from source)"
        )
        lines.append(f"  # {where}")
        lines.append(f'  "{name}" = impl: {{ {", ".join(formals)} }}@args: impl args;')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(source: str, target: str) -> None:
    Path(target).write_text(render(json.loads(Path(source).read_text())))


if __name__ == "__main__":
    main(*sys.argv[1:])
