"""The README tells the truth about the settings and the commands (checked, not trusted)."""

from __future__ import annotations

import json
import re
import sys

from services import REPO
from working.contract import contract

README = (REPO / "README.md").read_text()


def _settings_table() -> dict[str, tuple[str, str]]:
    rows = re.findall(r"^\| `([A-Z_]+)` \| (.+?) \| (.+?) \|$", README, flags=re.MULTILINE)
    return {name: (default, meaning) for name, default, meaning in rows}


def test_settings_table_matches_the_contract() -> None:
    table = _settings_table()
    env = contract()["env"]
    assert list(table) == list(env)
    for name, spec in env.items():
        default, meaning = table[name]
        assert default == (f"`{spec['default']}`" if spec["default"] else "(unset)"), name
        expected = spec["help"] + (" (secret)" if spec.get("secret") else "")
        assert meaning == expected, name


def test_commands_table_lists_every_subcommand() -> None:
    listed = re.findall(r"^\| `([a-z-]+)[^`]*`", README, flags=re.MULTILINE)
    assert set(listed) == set(contract()["entrypoint"]["commands"])


def test_the_two_commands_are_the_ones_ci_runs() -> None:
    assert "uv run working serve" in README
    assert "bash .ci/run" in README
    ci = (REPO / ".ci" / "run").read_text()
    assert "uv run pytest" in README
    assert "uv run pytest\n" in ci


def test_performance_table_is_the_committed_bench_run() -> None:
    # bench/results.json is the one source of the numbers: the README quotes its headline.
    sys.path.insert(0, str(REPO))
    from bench.report import headline

    data = json.loads((REPO / "bench" / "results.json").read_text())
    assert headline(data) in README
    assert headline(data) in (REPO / "bench" / "results.md").read_text()
