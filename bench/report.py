"""The machine description and the Markdown table of results.md."""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from .contenders import GRANIAN, REFLEX, REPO, WORKING, WORKING_2


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _cmd(*cmd: str) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    versions = {}
    for dist in ("working", "reflex", "granian", "uvicorn", "starlette", "python-socketio"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    versions |= {
        "caddy": _cmd("caddy", "version"),
        "wrk": _cmd("wrk", "-v"),
        "node": _cmd("node", "--version"),
        "npm": _cmd("npm", "--version"),
    }
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_mib": mem_kb // 1024,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "git_commit": commit,
        "versions": versions,
    }


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _fmt(x: float, unit: str) -> str:
    if math.isnan(x):
        return "-"
    if unit == "MiB":
        return f"{x / 2**20:.0f}"
    if unit == "s":
        return f"{x:.2f}"
    if unit in ("ms",):
        return f"{x:.1f}"
    return f"{x:,.0f}"


def _table(
    title: str,
    rows: dict[str, list[float]],
    unit: str,
    higher_is_better: bool,
    baselines: list[str],
) -> list[str]:
    """One metric, one row per contender: median, min, max, and working vs each baseline."""
    present = [c for c in [WORKING, *baselines] if rows.get(c)]
    if not present:
        return []
    base = [b for b in baselines if rows.get(b)]
    head = f"| {title} | median ({unit}) | min | max | n |"
    sep = "|---|---:|---:|---:|---:|"
    if WORKING in rows and base:
        head += "".join(f" working vs {b} |" for b in base)
        sep += "---:|" * len(base)
    lines = [head, sep]
    ours = statistics.median(rows[WORKING]) if rows.get(WORKING) else math.nan
    for c in present:
        med, lo, hi = _stats(rows[c])
        line = f"| {c} | {_fmt(med, unit)} | {_fmt(lo, unit)} | {_fmt(hi, unit)} | {len(rows[c])} |"
        if WORKING in rows and base:
            for b in base:
                if c != WORKING:
                    line += " |"
                    continue
                theirs = statistics.median(rows[b])
                ratio = (
                    (ours / theirs) if higher_is_better else (theirs / ours if ours else math.nan)
                )
                line += f" {ratio:.2f}x |"
        lines.append(line)
    return [*lines, ""]


def _loads(averages: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in averages)


def _median(runs: list[float]) -> float:
    return statistics.median(runs) if runs else math.nan


def _p99(runs: list[dict[str, Any]]) -> float:
    return _median([percentile(sorted(r["latencies_ms"]), 99) for r in runs])


def _has(by: dict[str, Any], *names: str) -> bool:
    return all(by.get(n) for n in (WORKING, *names))


def _rate(runs: list[dict[str, Any]]) -> float:
    return _median([r["events"] / r["seconds"] for r in runs if r["seconds"]])


def goals(data: dict[str, Any]) -> str:
    """Issue 22's goals, each against this run's medians: met or not, by how much, and where
    one is not, the profile that says what is left."""
    s = data["samples"]
    rows = ["| goal | this run | | where it is not met, what is left |", "|---|---|---|---|"]

    def row(goal: str, result: str, met: bool, left: str) -> None:
        verdict, why = ("met", "") if met else ("**not met**", left)
        rows.append(f"| {goal} | {result} | {verdict} | {why} |")

    if (cold := s.get("cold_start_s")) and cold.get(WORKING):
        ours = _median(cold[WORKING])
        row(
            "cold start to the first 200 <= 0.5 s",
            f"{ours:.2f} s",
            ours <= 0.5,
            "importing Reflex (its config module pulls its component and type machinery): "
            "[profile-start.md](profile-start.md)",
        )
    for n in ("200", "50"):
        by = s.get("events", {}).get(n, {})
        others = [c for c in (REFLEX, GRANIAN) if by.get(c)]
        if by.get(WORKING) and others:
            ours = _rate(by[WORKING])
            ratios = {c: ours / _rate(by[c]) for c in others}
            row(
                f"events/s, {n} clients back to back, >= 1.5x reflex and Granian",
                f"{ours:.0f} ev/s: " + ", ".join(f"{r:.2f}x {c}" for c, r in ratios.items()),
                min(ratios.values()) >= 1.5,
                "Reflex's event processing and python-socketio, the same code on every "
                "server: [profile-events.md](profile-events.md)",
            )
    if (by := s.get("static", {}).get("/ [identity]")) and _has(by, GRANIAN):
        ours, theirs = (_median([r["rps"] for r in by[c]]) for c in (WORKING, GRANIAN))
        row(
            "`/` identity >= 1.0x Granian",
            f"{ours:,.0f} req/s, {ours / theirs:.2f}x Granian",
            ours >= theirs,
            "[profile-static.md](profile-static.md)",
        )
    if (mem := s.get("memory")) and mem.get(WORKING):
        idle = _median(mem[WORKING]["idle_rss"]) / 2**20
        row(
            "idle RSS <= 90 MiB",
            f"{idle:.0f} MiB",
            idle <= 90,
            "modules Reflex and python-socketio import whether used or not: "
            "[profile-start.md](profile-start.md)",
        )
    return "\n".join(rows) + "\n"


def headline(data: dict[str, Any]) -> str:
    """The table README.md quotes (tests/test_readme.py holds the README to it): the medians
    of working and `reflex run`, for the workloads people choose a server by."""
    s = data["samples"]
    rows = [
        "| | `working serve` | `reflex run --env prod` | ratio |",
        "|---|---:|---:|---:|",
    ]
    if (cold := s.get("cold_start_s")) and _has(cold, REFLEX):
        ours, theirs = _median(cold["working"]), _median(cold["reflex"])
        rows.append(
            f"| cold start to the first 200 | {ours:.2f} s | {theirs:.2f} s | "
            f"{theirs / ours:.1f}x faster |"
        )
    for key, label in (
        ("/ [br]", "`/`, browser encodings"),
        ("largest JS [br]", "largest JS asset, Brotli"),
    ):
        if (by := s.get("static", {}).get(key)) and _has(by, REFLEX, "caddy"):
            ours, theirs, caddy = (
                _median([r["rps"] for r in by.get(c, [])]) for c in (WORKING, "reflex", "caddy")
            )
            rows.append(
                f"| {label} | {ours:,.0f} req/s | {theirs:,.0f} req/s | "
                f"{ours / theirs:.0f}x ({ours / caddy:.2f}x Caddy) |"
            )
    if (by := s.get("events", {}).get("50@1s")) and _has(by, REFLEX):
        ours, theirs = _p99(by["working"]), _p99(by["reflex"])
        rows.append(
            f"| event p99, 50 clients at 1 event/s | {ours:.1f} ms | {theirs:.1f} ms | "
            f"{theirs / ours:.2f}x |"
        )
    if (by := s.get("events", {}).get("200")) and _has(by, REFLEX):
        rate = {c: _rate(by[c]) for c in (WORKING, "reflex")}
        errors = {c: sum(r["errors"] for r in by[c]) for c in (WORKING, "reflex")}
        rows.append(
            f"| events, 200 clients back to back | {rate[WORKING]:.0f} ev/s, "
            f"{errors[WORKING]} errors | {rate['reflex']:.0f} ev/s, {errors['reflex']} errors | "
            f"{rate[WORKING] / rate['reflex']:.2f}x |"
        )
        if _has(by, WORKING_2):
            two = _rate(by[WORKING_2])
            idle = _median(s["memory"][WORKING_2]["idle_rss"])
            rows.append(
                f"| the same, 2 workers on Redis | {two:.0f} ev/s, {idle / 2**20:.0f} MiB idle | "
                f"{rate['reflex']:.0f} ev/s | {two / rate['reflex']:.2f}x |"
            )
    if (mem := s.get("memory")) and _has(mem, REFLEX):
        ours, theirs = _median(mem["working"]["idle_rss"]), _median(mem["reflex"]["idle_rss"])
        rows.append(
            f"| idle memory (RSS) | {ours / 2**20:.0f} MiB | {theirs / 2**20:.0f} MiB | "
            f"{theirs / ours:.1f}x less |"
        )
    if pay := s.get("payload"):
        ours, theirs = pay["new_total"], pay["old_total"]
        rows.append(
            f"| what the runtime ships | {ours / 2**20:.0f} MiB | {theirs / 2**20:.0f} MiB "
            f"(old Dockerfile) | {theirs / ours:.0f}x less |"
        )
    return "\n".join(rows) + "\n"


def markdown(data: dict[str, Any]) -> str:
    s = data["samples"]
    baselines: list[str] = data["baselines"]
    m = data["machine"]
    p = data["parameters"]
    out = [
        "# Benchmarks: `working serve` against its baselines",
        "",
        "Generated by `uv run python -m bench` (see bench/README.md); raw samples and the machine",
        "in [results.json](results.json). Ratios compare medians and always read as *how many",
        "times better working is* (above 1 = working wins): for rates working/baseline, for",
        "times, latencies and sizes baseline/working.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_mib']} MiB, Linux {m['kernel']}, "
        f"Python {m['python']}; commit {m['git_commit']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        "",
        (
            f"Load average (1, 5, 15 min) before {_loads(data['loadavg_before'])}, after "
            f"{_loads(data['loadavg_after'])}: anything else running on the machine shows here."
            if "loadavg_before" in data
            else "Load average not recorded."
        ),
        "",
        f"Parameters: {p['cold_runs']} cold starts each, {p['rounds']} alternating rounds, wrk "
        f"{p['wrk_seconds']:g}s x {p['wrk_connections']} connections (2 threads), event clients "
        f"{', '.join(map(str, p['clients']))} x {p['events_per_client']} events each.",
        "",
        "## Headline (quoted in README.md)",
        "",
        headline(data),
        "## Goals of issue 22",
        "",
        goals(data),
        "How each was profiled on this machine, and what changed: "
        "[profile-events.md](profile-events.md),",
        "[profile-start.md](profile-start.md) (start and memory) and",
        "[profile-static.md](profile-static.md).",
        "",
    ]
    if cold := s.get("cold_start_s"):
        out += [
            "## Cold start: process start to the first 200",
            "",
            "working and granian: `/health` (PostgreSQL up, migrations checked); reflex: `/ping`",
            "then `/` (Reflex's prod path compiles the app and rebuilds the frontend first).",
            "",
        ]
        out += _table("cold start", cold, "s", False, [b for b in baselines if b in cold])
    if static := s.get("static"):
        out += [
            "## Static files (wrk)",
            "",
            "`[identity]` no compression accepted; `[gzip]` `Accept-Encoding: gzip`; `[br]` what",
            "a browser sends (`gzip, deflate, br, zstd`). The largest JS asset is that of each",
            "contender's own build (Reflex's rebuild names its files differently).",
            "",
        ]
        for key, by in static.items():
            rps = {c: [r["rps"] for r in runs] for c, runs in by.items()}
            p99 = {c: [r["p99_ms"] for r in runs] for c, runs in by.items()}
            bw = {c: [r["bytes_per_s"] for r in runs] for c, runs in by.items()}
            errs = {c: sum(r["errors"] for r in runs) for c, runs in by.items()}
            bl = [b for b in baselines if b in by]
            out += [f"### {key}", ""]
            out += _table("requests/s", rps, "req/s", True, bl)
            out += _table("p99 latency", p99, "ms", False, bl)
            out += _table(
                "transfer", {c: [v / 2**20 for v in x] for c, x in bw.items()}, "MiB/s", True, bl
            )
            if any(errs.values()):
                out += [f"Errors (non-2xx, socket): {errs}", ""]
    if ev := s.get("events"):
        out += [
            "## Events: concurrent Socket.IO clients adding notes",
            "",
            "Each client signs up, opens /notes, then adds notes one after another (a database",
            "write and a read of its notes per event); round trip = send to the delta. N clients",
            "send back to back (saturation: p50 is about N / throughput); N@1s clients each send",
            "one event a second, like people using the page.",
            "",
        ]
        for n, by in ev.items():
            bl = [b for b in baselines if b in by]
            lat = {c: [x for r in runs for x in r["latencies_ms"]] for c, runs in by.items()}
            p50 = {
                c: [percentile(sorted(r["latencies_ms"]), 50) for r in runs]
                for c, runs in by.items()
            }
            p99 = {
                c: [percentile(sorted(r["latencies_ms"]), 99) for r in runs]
                for c, runs in by.items()
            }
            rate = {
                c: [r["events"] / r["seconds"] if r["seconds"] else 0.0 for r in runs]
                for c, runs in by.items()
            }
            errors = {c: sum(r["errors"] for r in runs) for c, runs in by.items()}
            out += [f"### N = {n} clients", ""]
            out += _table("p50 round trip", p50, "ms", False, bl)
            out += _table("p99 round trip", p99, "ms", False, bl)
            out += _table("events/s", rate, "ev/s", True, bl)
            out += [
                "Errors: "
                + ", ".join(
                    f"{c} {errors[c]} of {sum(r['events'] + r['errors'] for r in by[c])}"
                    for c in by
                )
                + "; all-samples p99: "
                + ", ".join(f"{c} {percentile(sorted(v), 99):.1f} ms" for c, v in lat.items()),
                "",
            ]
    if mem := s.get("memory"):
        out += ["## Memory: RSS of the whole process tree", ""]
        keys = sorted({k for v in mem.values() for k in v}, key=lambda k: (k != "idle_rss", k))
        for key in keys:
            rows = {c: v[key] for c, v in mem.items() if key in v}
            label = "idle" if key == "idle_rss" else f"peak at N={key.rsplit('_', 1)[-1]}"
            out += _table(label, rows, "MiB", False, [b for b in baselines if b in rows])
    if pay := s.get("payload"):
        mib = 2**20
        out += [
            "## Payload: bytes the runtime needs (du)",
            "",
            "| working (image) | MiB | old Dockerfile, beyond its base | MiB |",
            "|---|---:|---|---:|",
        ]
        new, old = list(pay["new"].items()), list(pay["old"].items())
        for i in range(max(len(new), len(old))):
            a = new[i] if i < len(new) else ("", 0)
            b = old[i] if i < len(old) else ("", 0)
            out.append(
                f"| {a[0]} | {a[1] / mib:.0f} | {b[0]} | {b[1] / mib:.0f} |"
                if a[0]
                else f"| | | {b[0]} | {b[1] / mib:.0f} |"
            )
        out += [
            f"| **total** | **{pay['new_total'] / mib:.0f}** | **total** | "
            f"**{pay['old_total'] / mib:.0f}** |",
            "",
            f"working ships {pay['new_total'] / pay['old_total']:.2f} of the old approach's bytes "
            f"({pay['old_total'] / pay['new_total']:.1f}x less). The old venv is counted as the "
            "same no-dev venv; Debian sizes are dpkg's Installed-Size of each package and of what "
            "it pulls in beyond python:3.11-slim (the lists are in results.json).",
            "",
        ]
    return "\n".join(out) + "\n"
