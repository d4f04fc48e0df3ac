"""Clients that keep responses in flight: what a graceful shutdown must wait for (or cut)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import threading
import time
from pathlib import Path

from services import Server

LARGE_ASSET = "large-0000.bin"


def export_with_large_asset(export: Path, into: Path) -> Path:
    """A copy of the export plus one 24 MiB asset: more than the kernel buffers on both ends can
    hold, so a slow reader keeps its response in flight on the server for seconds.

    The export may be read-only (a Nix store path: 0555 directories, 0444 files), and copytree
    keeps those modes: the copy's directories are made writable by their owner before the asset
    is added. The copied files stay as they were."""
    shutil.copytree(export, into)
    for directory in [into, *(p for p in into.rglob("*") if p.is_dir() and not p.is_symlink())]:
        directory.chmod(directory.stat().st_mode | stat.S_IWUSR)
    (into / "assets" / LARGE_ASSET).write_bytes(os.urandom(24 * 1024 * 1024))
    return into


def _slow_download(url_path: str, port: int, expected: bytes, results: list[bool]) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET {url_path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    )
    received = bytearray()
    sock.settimeout(30)
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            received += chunk
            time.sleep(0.01)  # about 5 MiB/s: five seconds for the whole asset
    sock.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    results.append(head.startswith(b"HTTP/1.1 200") and body == expected)


def start_slow_downloads(server: Server, count: int) -> tuple[list[threading.Thread], list[bool]]:
    """`count` slow downloads of the large asset, all mid-response when this returns; each
    thread appends whether it got the whole asset intact."""
    asset = Path(server.env["FRONTEND_DIR"]) / "assets" / LARGE_ASSET
    expected = asset.read_bytes()
    results: list[bool] = []
    threads = [
        threading.Thread(
            target=_slow_download, args=(f"/assets/{asset.name}", server.port, expected, results)
        )
        for _ in range(count)
    ]
    for t in threads:
        t.start()
    time.sleep(1)
    return threads, results


def assert_cut_at_the_deadline(server: Server) -> None:
    """The log of a drain the deadline cut: said once, each cut download marked, and none of
    the cancelled requests reported as a crash."""
    lines = server.lines
    assert any("timeout graceful shutdown exceeded" in line for line in lines), server.output
    cut = [line for line in lines if f'/assets/{LARGE_ASSET} HTTP/1.1" 200 (incomplete)' in line]
    assert cut, server.output
    assert not any("Traceback" in line or "Exception in ASGI" in line for line in lines), (
        server.output
    )
