"""The workloads: cold start, static files (wrk), events (Socket.IO clients), memory, payload.

Each returns plain data (lists of samples, dicts) that report.py summarizes.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contenders import Workspace, contender
from .procs import BenchError, Proc
from .reflex_client import ReflexClient, client_storage_vars, full_name, logged_in

# --- cold start -------------------------------------------------------------------------------


def cold_start(ws: Workspace, name: str, port: int, timeout: float) -> float:
    """Seconds from process start to the first 200 on the contender's ready paths."""
    proc = contender(name, ws, port).start()
    try:
        return proc.wait_ready(timeout)
    finally:
        proc.stop()


# --- static (wrk) -------------------------------------------------------------------------------

ENCODINGS = {
    "identity": "identity",
    "gzip": "gzip",
    # What a browser sends.
    "br": "gzip, deflate, br, zstd",
}


def wrk(url: str, accept_encoding: str, duration: float, connections: int) -> dict[str, float]:
    """One wrk run: requests/s, p99 latency (ms), transfer (bytes/s), errors."""
    wrk_bin = shutil.which("wrk")
    if wrk_bin is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk")
    cmd = [
        wrk_bin,
        "-t2",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-H",
        f"Accept-Encoding: {accept_encoding}",
        url,
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + 60, check=False
    ).stdout
    return parse_wrk(out)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def parse_wrk(out: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    if not (rps and p99 and transfer):
        raise BenchError(f"cannot parse wrk output:\n{out}")
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
    return {
        "rps": float(rps.group(1)),
        "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)],
        "bytes_per_s": float(transfer.group(1)) * _BYTES[transfer.group(2)],
        "errors": float(errors),
    }


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """`clients` tabs; each sends its next event `pace` seconds after the previous one was
    sent (0: as soon as the answer arrives, which measures saturation, not interactivity)."""

    clients: int
    pace: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Load:
        clients, _, pace = text.partition("@")
        return cls(int(clients), float(pace or 0))

    @property
    def label(self) -> str:
        return f"{self.clients}@{self.pace:g}s" if self.pace else str(self.clients)


@dataclass
class EventRun:
    clients: int
    events_per_client: int
    pace: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rss_peak: int = 0
    rss_connected: int = 0

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)


class _RssSampler:
    def __init__(self, proc: Proc) -> None:
        self.proc, self.peak, self._stop = proc, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.peak = max(self.peak, self.proc.rss())

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _events(proc: Proc, run: EventRun, timeout: float) -> None:
    names = {
        "sign_up": full_name("AuthState.sign_up"),
        "add": full_name("NotesState.add"),
        "notes": full_name("NotesState"),
    }
    storage = client_storage_vars()
    setup = asyncio.Semaphore(16)  # sign-ups hash passwords (scrypt): not part of the measure
    go = asyncio.Event()
    ready = 0

    async def client(i: int) -> None:
        nonlocal ready
        c = ReflexClient(proc.url, client_storage=storage, connect_timeout=timeout)
        try:
            async with setup:
                await c.connect()
                await c.hydrate("/signup", timeout=timeout)
                form = {"username": f"b{uuid.uuid4().hex[:20]}", "password": "bench password"}
                await c.event(names["sign_up"], {"form": form}, until=logged_in, timeout=timeout)
                await c.hydrate("/notes", timeout=timeout)
        except Exception as exc:
            run.error(f"setup: {exc}")
            await c.close()
            ready += 1
            return
        ready += 1
        await go.wait()
        # Paced tabs start at random offsets, as people do, not in lockstep.
        next_at = time.perf_counter() + random.uniform(0, run.pace)
        try:
            for k in range(run.events_per_client):
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += run.pace
                began = time.perf_counter()
                try:
                    updates = await c.event(
                        names["add"], {"form": {"body": f"note {i}.{k}"}}, timeout=timeout
                    )
                except Exception as exc:
                    run.error(f"event: {exc}")
                    if not c.connected:
                        return
                    continue
                elapsed = (time.perf_counter() - began) * 1e3
                delta = updates[-1].get("delta", {}).get(names["notes"], {})
                if "notes_rx_state_" not in delta:
                    run.error(f"event answered without notes: {str(updates)[:200]}")
                    continue
                run.latencies_ms.append(elapsed)
        finally:
            await c.close()

    tasks = [asyncio.create_task(client(i)) for i in range(run.clients)]
    deadline = time.monotonic() + timeout * 4 + run.clients
    while ready < run.clients and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    run.rss_connected = proc.rss()
    began = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    run.seconds = time.perf_counter() - began


def events(proc: Proc, load: Load, per_client: int, timeout: float) -> EventRun:
    """`load.clients` concurrent tabs: sign up, open /notes, then each adds `per_client` notes
    one after another, `load.pace` seconds apart (each a database write and a read of the
    user's notes)."""
    run = EventRun(load.clients, per_client, load.pace)
    with _RssSampler(proc) as sampler:
        asyncio.run(_events(proc, run, timeout))
    run.rss_peak = max(sampler.peak, run.rss_connected)
    return run


# --- payload ------------------------------------------------------------------------------------

# What python:3.11-slim (Debian bookworm), the old Dockerfile's base, already carries: not
# counted against build-essential or Node.
_BASE_IMAGE_PACKAGES = frozenset(
    [
        "base-files",
        "bash",
        "coreutils",
        "dpkg",
        "libc6",
        "libgcc-s1",
        "libstdc++6",
        "zlib1g",
        "libssl3",
        "libffi8",
        "libbz2-1.0",
        "liblzma5",
        "libzstd1",
        "libselinux1",
        "libpcre2-8-0",
        "libacl1",
        "libmd0",
        "libcrypt1",
        "libtinfo6",
        "libreadline8",
        "readline-common",
        "libgdbm6",
        "libgdbm-compat4",
        "libdb5.3",
        "tar",
        "gcc-12-base",
        "perl-base",
        "libgmp10",
        "libcom-err2",
        "libgssapi-krb5-2",
        "libk5crypto3",
        "libkeyutils1",
        "libkrb5-3",
        "libkrb5support0",
        "libnsl2",
        "libtirpc3",
        "libtirpc-common",
        "libunistring2",
        "libsqlite3-0",
        "libuuid1",
        "xz-utils",
        "bzip2",
        "libaudit1",
        "libcap-ng0",
        "libattr1",
        "libsemanage2",
        "debconf",
    ]
)


def du(path: Path) -> int:
    """Disk usage in bytes (`du -sk`)."""
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) * 1024


def _installed_size(package: str) -> int:
    """dpkg's Installed-Size (KiB) of an installed package, else the archive's (apt-cache)."""
    out = subprocess.run(
        ["dpkg-query", "-Wf", "${Status}\t${Installed-Size}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    status, _, size = out.stdout.partition("\t")
    if out.returncode == 0 and status.endswith(" installed") and size.strip().isdigit():
        return int(size) * 1024
    show = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", package],
        capture_output=True,
        text=True,
        check=False,
    )
    m = re.search(r"^Installed-Size:\s*(\d+)", show.stdout, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else 0


def _closure(package: str) -> list[str]:
    out = subprocess.run(
        [
            "apt-cache",
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            package,
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    names = {line.strip() for line in out.splitlines() if line and not line.startswith(" ")}
    return sorted(n for n in names if not n.startswith("<") and n not in _BASE_IMAGE_PACKAGES)


def debian_packages(package: str) -> tuple[int, list[str]]:
    """Installed size of `package` and what it pulls in beyond the slim base image."""
    names = _closure(package) or [package]
    return sum(_installed_size(n) for n in names), names


def payload(ws: Workspace) -> dict[str, Any]:
    """Bytes the runtime needs, against what the old Dockerfile carried beyond its base."""
    venv = ws.venv  # what the app servers ran from: the no-dev venv with the package
    node_bytes, node_pkgs = debian_packages("nodejs")
    be_bytes, be_pkgs = debian_packages("build-essential")
    web = ws.reflex_dir / ".web"
    new = {"venv (no dev)": du(venv), "frontend export": du(ws.export)}
    old = {
        "venv (no dev)": new["venv (no dev)"],
        ".web with node_modules": du(web) if web.is_dir() else 0,
        "Node.js and npm (Debian nodejs)": node_bytes,
        "build-essential (and what it pulls in)": be_bytes,
    }
    return {
        "new": new,
        "old": old,
        "new_total": sum(new.values()),
        "old_total": sum(old.values()),
        "packages": {"nodejs": node_pkgs, "build-essential": be_pkgs},
    }
