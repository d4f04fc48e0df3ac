"""`checks.pytest` and its rehearsal (tests/sandbox_check.py) read one selection, one
environment and one list of accepted skips: nix/pytest-check.toml, through nix/checks.nix."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import tomllib
from pathlib import Path

import pytest
from pytest_check import skip_problems
from sandbox_check import NIX_CHROOT, _evaluate, _tracked_files

from services import REPO

SPEC = tomllib.loads((REPO / "nix" / "pytest-check.toml").read_text())


def test_only_the_listed_skips_pass() -> None:
    expected = {"t.py::a": "no nginx", "t.py::b": "no schema", "t.py::elsewhere": "x"}
    collected = {"t.py::a", "t.py::b", "t.py::c"}
    assert (
        skip_problems(collected, {"t.py::a": "Skipped: no nginx", "t.py::b": "no schema"}, expected)
        == []
    )
    problems = skip_problems(collected, {"t.py::a": "no redis", "t.py::c": "why"}, expected)
    assert problems == [
        "skipped, not listed in nix/pytest-check.toml [skips]: t.py::c (why)",
        "skipped for another reason than the listed 'no nginx': t.py::a (no redis)",
        "listed in nix/pytest-check.toml [skips] but not skipped: t.py::b",
    ]


def test_every_listed_skip_names_a_test_in_the_selection() -> None:
    for nodeid in SPEC["skips"]:
        path, _, name = nodeid.partition("::")
        assert (REPO / path).is_file(), nodeid
        assert f"def {name.split('[')[0]}(" in (REPO / path).read_text(), nodeid


@pytest.mark.nix
def test_checks_pytest_takes_selection_env_and_skips_from_the_one_file() -> None:
    """nix/checks.nix's `pytest`, evaluated as the rehearsal evaluates it."""
    if not shutil.which("nix-instantiate") and os.geteuid() != 0:
        pytest.skip(f"{NIX_CHROOT} needs root")
    work = Path(tempfile.mkdtemp(prefix="working-pytest-check-"))
    try:
        check = _evaluate(_tracked_files(work / "source"))
    finally:
        shutil.rmtree(work)
    env = dict(check["env"])
    assert json.loads(env.pop("WORKING_EXPECTED_SKIPS")) == SPEC["skips"]
    assert env.pop("WORKING_PYTEST_MARKERS") == SPEC["markers"]
    assert env.pop("WORKING_TEST_FRONTEND") == "@frontend@"
    assert env == SPEC["env"]
    assert check["nativeBuildInputs"] == ["@testEnv@", "@nodejs@", "@redis@"]
    assert (
        'python -m pytest -p no:cacheprovider -m "$WORKING_PYTEST_MARKERS"'
        in (check["buildCommand"])
    )
    assert "HOME" not in check["buildCommand"], "HOME stays Nix's /homeless-shelter"


def test_ci_rehearses_the_check_after_the_suite() -> None:
    steps = (REPO / ".ci" / "run").read_text().splitlines()
    assert steps.index("uv run python -m tests.sandbox_check") > steps.index("uv run pytest")


def test_the_check_states_the_load_its_time_bounds_assume(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/margins.py: every wall-clock upper bound scales with WORKING_TEST_LOAD, which the
    check sets (builders run checks in parallel); a bad value is refused."""
    import margins

    monkeypatch.setenv("WORKING_TEST_LOAD", SPEC["env"]["WORKING_TEST_LOAD"])
    assert margins.within(2) == 2 * float(SPEC["env"]["WORKING_TEST_LOAD"]) > 2
    monkeypatch.setenv("WORKING_TEST_LOAD", "0.5")
    with pytest.raises(
        ValueError, match=r"WORKING_TEST_LOAD='0\.5': expected a number from 1 to 20"
    ):
        margins.within(2)
