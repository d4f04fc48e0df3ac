"""tests/mutate.py's own promises: every mutation still applies, and one that no longer does is
reported stale instead of passing for caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from mutate import MUTATIONS, _apply

from services import REPO


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_every_mutation_applies_to_the_current_code(mutation, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # When this fails, the code the mutation breaks has moved: update its snippet in mutate.py.
    copy = tmp_path / Path(mutation.path).name
    copy.write_text((REPO / mutation.path).read_text())
    assert _apply(copy, mutation.edits) is None
    assert copy.read_text() != (REPO / mutation.path).read_text()
    for test in mutation.tests:
        assert (REPO / test.split("::")[0]).is_file(), test


def test_a_snippet_that_is_gone_is_stale(tmp_path: Path) -> None:
    file = tmp_path / "module.py"
    file.write_text("THROTTLE_AFTER = 3\n")
    reason = _apply(file, (("THROTTLE_AFTER = 5\n", "THROTTLE_AFTER = 50\n"),))
    assert reason == "snippet found 0 times: 'THROTTLE_AFTER = 5'"
    assert file.read_text() == "THROTTLE_AFTER = 3\n"
