"""The README tells the truth about the settings and the commands (checked, not trusted)."""

from __future__ import annotations

import json
import re
import sys

from services import REPO
from working.runtime import app_settings
from working.runtime.contract import contract

README = (REPO / "README.md").read_text()


APP_SETTINGS_HEADING = "\n### The app's own settings\n"


def _settings_table(text: str) -> dict[str, tuple[str, str]]:
    rows = re.findall(r"^\| `([A-Z_]+)` \| (.+?) \| (.+?) \|$", text, flags=re.MULTILINE)
    return {name: (default, meaning) for name, default, meaning in rows}


def _settings_tables() -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """The runtime's table, and the app's under its own heading (README, "Settings")."""
    runtime, app = README.split(APP_SETTINGS_HEADING, 1)
    return _settings_table(runtime), _settings_table(app.split("\n## ", 1)[0])


def test_settings_table_matches_the_contract() -> None:
    table, _ = _settings_tables()
    env = contract()["env"]
    assert list(table) == list(env)
    for name, spec in env.items():
        default, meaning = table[name]
        assert default == (f"`{spec['default']}`" if spec["default"] else "(unset)"), name
        expected = spec["help"] + (" (secret)" if spec.get("secret") else "")
        assert meaning == expected, name


def test_app_settings_table_matches_the_apps_declaration() -> None:
    _, table = _settings_tables()
    declared = app_settings.declared()
    assert list(table) == [setting.name for setting in declared]
    for setting in declared:
        default, meaning = table[setting.name]
        if setting.required:
            assert default == "(required)", setting.name
        else:
            assert default == (f"`{setting.default}`" if setting.default else "(unset)")
        choices = f" (one of: {', '.join(setting.choices)})" if setting.choices else ""
        expected = setting.help + choices + (" (secret)" if setting.secret else "")
        assert meaning == expected, setting.name


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


def _prose(heading: str) -> str:
    """One `## heading` section of the README, its white space folded (sentences wrap)."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return " ".join(section.split())


def test_exit_codes_are_the_contracts() -> None:
    failure = _prose("The entrypoint").split("**Failure.** Exit codes: ", 1)[1].split(". ", 1)[0]
    # What each code of the contract means, in the README's words.
    meanings = {
        "ok": "normal stop",
        "error": "unexpected error",
        "config": "invalid configuration",
        "dependency": "a dependency never became reachable",
        "migration": "migration failed",
    }
    codes = contract()["exit_codes"]
    assert set(codes) == set(meanings)
    assert [int(n) for n in re.findall(r"(?:^|, )(\d) ", failure)] == sorted(codes.values())
    for name, meaning in meanings.items():
        assert f"{codes[name]} {meaning}" in failure, name


def test_security_section_states_the_actual_limits() -> None:
    from working import auth, housekeeping, login
    from working.runtime import logs

    security = _prose("Security")
    limits = contract()["limits"]
    env = contract()["env"]
    throttle = login.THROTTLE  # the policy the app runs with
    stated = [
        f"headers together are at most {limits['max_request_head_bytes'] // 1024} KiB",
        f"complete within {limits['request_head_timeout_s']} s of its first byte",
        f"sends nothing is closed after {limits['request_head_timeout_s']} s",
        f"keep-alive connection after {limits['keep_alive_timeout_s']} s",
        f"(`/_upload`) is at most {limits['max_upload_bytes'] // 2**20} MiB",
        f"One message is at most {limits['max_websocket_message_bytes'] // 1024} KiB",
        f"at most {limits['max_router_data_bytes'] // 1024} KiB (the event is dropped",
        f"`STATE_IDLE_TTL` ({int(env['STATE_IDLE_TTL']['default']) // 60} min)",
        f"cut at {limits['max_log_value_chars']:,} characters",
        f"limited to {limits['log_repeats_per_minute']} a minute per kind",
        f"other libraries' lines to {logs._ALL_KINDS} a minute in all",
        f"after {throttle.free}, that client waits {throttle.base_s} s",
        f"up to {throttle.max_s // 60} min",
        f"ticket (valid {int(auth.TICKET_TTL.total_seconds())} s)",
        f"every {int(housekeeping.PURGE_EVERY_S) // 60} minutes",
    ]
    for phrase in stated:
        assert phrase in security, phrase
