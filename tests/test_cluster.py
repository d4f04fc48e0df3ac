"""The test harness itself: a cluster that fails to start leaves no replica running."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cluster import Cluster

pytestmark = pytest.mark.slow


def test_a_failed_start_stops_the_replicas_already_started(
    frontend_export: Path, tmp_path: Path
) -> None:
    cluster = Cluster(
        2, {"FRONTEND_DIR": str(frontend_export), "DATA_DIR": str(tmp_path / "data")}, tmp_path
    )
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
        assert any("ready on http://" in line for line in first.lines), first.output
    finally:
        cluster.stop()
