"""Wall-clock upper bounds in the tests, and the load they assume: the one place for both.

A test that bounds how long something took (a server ready, a drain cut at its deadline, a
process gone after a second signal, a request answered during a flood) was measured on the CI
machine: 2 shared cores, one pytest process at a time, load average up to about 12. Each such
bound is written `within(seconds)`: the seconds that hold under that load, multiplied by
WORKING_TEST_LOAD (default 1), the busier-than-CI factor of the machine running the tests.

`nix flake check` builds checks.pytest beside the vm and image-contract checks (and a cold
cache's Node 20 build), so nix/pytest-check.toml sets WORKING_TEST_LOAD=3 there. Scaling a bound
never makes its test unable to fail: where the bound stands for a promise (the deadline cut the
downloads, the second signal did not wait for the drain) the test also checks what the server
said and did (exit code, the log lines, the downloads left incomplete). Lower bounds ("it waited
at least 3 s") are never scaled: load only makes things slower.
"""

from __future__ import annotations

import os


def load() -> float:
    """WORKING_TEST_LOAD; conftest.py checks it once at start-up (a bad value stops the run)."""
    raw = os.environ.get("WORKING_TEST_LOAD", "1")
    try:
        factor = float(raw)
    except ValueError:
        factor = 0.0
    if not 1 <= factor <= 20:
        raise ValueError(f"WORKING_TEST_LOAD={raw!r}: expected a number from 1 to 20 (e.g. 3)")
    return factor


def within(seconds: float) -> float:
    """An upper bound of `seconds` on the CI machine, scaled for the machine running the tests."""
    return seconds * load()
