"""The benchmark harness with tiny parameters, so that it cannot rot (benchmarks are not tests:
the real run is `uv run python -m bench`, its results in bench/results.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services import REPO

pytestmark = pytest.mark.slow


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        message = f"{tool} is not installed (apt-get install -y {tool})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _bench(*args: str, timeout: float) -> None:
    run = [sys.executable, "-m", "bench", *args]
    result = subprocess.run(
        run, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]


def test_harness_runs_every_workload_against_every_contender(
    frontend_export: Path, tmp_path: Path
) -> None:
    _require("wrk")
    _require("caddy")
    _require("redis-server")
    out = tmp_path / "out"
    _bench(
        "--quick",
        "--export",
        str(frontend_export),
        "--workdir",
        str(tmp_path / "ws"),
        "--out",
        str(out),
        timeout=1500,
    )

    data = json.loads((out / "results.json").read_text())
    assert data["machine"]["cores"] >= 1
    assert data["machine"]["cpu"]
    samples = data["samples"]
    assert set(samples["cold_start_s"]) == {"working", "reflex", "granian"}
    assert all(len(v) == 2 and min(v) > 0 for v in samples["cold_start_s"].values())
    for key in ("/ [identity]", "/ [br]", "largest JS [gzip]"):
        assert set(samples["static"][key]) == {"working", "reflex", "granian", "caddy"}
        assert all(run[0]["rps"] > 0 for run in samples["static"][key].values())
    for n in ("1", "4"):
        assert set(samples["events"][n]) == {"working", "reflex", "granian", "working-2w"}
        for name, runs in samples["events"][n].items():
            assert runs[0]["errors"] == 0, (name, runs[0]["error_samples"])
            assert runs[0]["events"] == int(n) * 3
    assert all(v["idle_rss"][0] > 0 for v in samples["memory"].values())
    assert 0 < samples["payload"]["new_total"] < samples["payload"]["old_total"]

    table = (out / "results.md").read_text()
    for heading in ("## Cold start", "## Static files", "## Events", "## Memory", "## Payload"):
        assert heading in table
    assert "working vs reflex" in table
    assert "working vs caddy" in table
    assert "working vs working-2w" in table

    # --render writes the same table again from results.json alone (after a report change).
    written = table
    (out / "results.md").unlink()
    _bench("--render", "--out", str(out), timeout=120)
    assert (out / "results.md").read_text() == written
