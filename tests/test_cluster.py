"""The test harness itself: a cluster that fails to start leaves no replica running."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cluster import Cluster

from services import base_env, wait_until

pytestmark = pytest.mark.slow


def test_a_failed_start_stops_the_replicas_already_started(
    frontend_export: Path, tmp_path: Path
) -> None:
    env = {"FRONTEND_DIR": str(frontend_export), "DATA_DIR": str(tmp_path / "data")}
    # Migrated beforehand: two replicas on one SQLite file would race at its first migration
    # (only PostgreSQL has the lock), and the second must fail on its port, not there.
    subprocess.run(
        [sys.executable, "-m", "working.runtime.entrypoint", "migrate"],
        env=base_env(**env),
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    cluster = Cluster(2, env, tmp_path)
    first, second = cluster.replicas
    # The second replica's port is taken: it exits 1 at once, after the first has started.
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", second.port))
            taken.listen()
            with pytest.raises(AssertionError, match="server exited 1"):
                cluster.start(timeout=60)
        assert first.process is not None
        assert first.process.poll() is not None, "the first replica was left running"
        # It had started (its "ready" line may reach the pipe just after /health answered).
        wait_until(lambda: any("ready on http://" in x for x in first.lines), 5, "first ready")
    finally:
        cluster.stop()
