"""The skips `checks.pytest` accepts (nix/pytest-check.toml, passed by nix/checks.nix as
WORKING_EXPECTED_SKIPS): any other skip, or a listed test that ran, fails the check."""

from __future__ import annotations

import json
import os

EXPECTED_SKIPS = "WORKING_EXPECTED_SKIPS"


def expected_skips() -> dict[str, str] | None:
    """Node id -> a part of its skip reason; None outside the check."""
    raw = os.environ.get(EXPECTED_SKIPS)
    return None if raw is None else dict(json.loads(raw))


def skip_problems(
    collected: set[str], skipped: dict[str, str], expected: dict[str, str]
) -> list[str]:
    """What differs from the accepted skips, among the tests that ran (a run of part of the
    selection judges only its part)."""
    problems = [
        f"skipped, not listed in nix/pytest-check.toml [skips]: {nodeid} ({reason})"
        for nodeid, reason in sorted(skipped.items())
        if nodeid not in expected
    ]
    for nodeid, part in sorted(expected.items()):
        if nodeid not in collected:
            continue
        if nodeid not in skipped:
            problems.append(f"listed in nix/pytest-check.toml [skips] but not skipped: {nodeid}")
        elif part not in skipped[nodeid]:
            problems.append(
                f"skipped for another reason than the listed {part!r}: {nodeid} ({skipped[nodeid]})"
            )
    return problems
