"""`uv run python -m bench`: every workload against every contender, in alternation.

Writes bench/results.md (medians, min, max, ratios) and bench/results.json (raw samples and
the machine). `--quick` runs tiny parameters (the smoke test uses it); see `--help`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import report, workloads
from .contenders import (
    ALL,
    APP_SERVERS,
    EVENTS_ONLY,
    REFLEX,
    WORKING,
    Workspace,
    contender,
    free_port,
    largest_js,
    log,
    prepare,
)
from .procs import BenchError

HERE = Path(__file__).resolve().parent


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny parameters: a smoke run")
    p.add_argument(
        "--contenders",
        default=",".join(ALL),
        help=f"comma-separated subset of {','.join(ALL)} (default: all)",
    )
    p.add_argument(
        "--workloads",
        default="cold,static,events,payload",
        help="comma-separated subset of cold,static,events,payload (memory comes with events)",
    )
    p.add_argument("--cold-runs", type=int, help="cold starts per contender (default 10)")
    p.add_argument("--rounds", type=int, help="alternating rounds of static/events (default 2)")
    p.add_argument("--wrk-seconds", type=float, help="seconds per wrk run (default 10)")
    p.add_argument("--wrk-connections", type=int, help="wrk connections (default 64)")
    p.add_argument(
        "--clients",
        help="event loads: N clients sending back to back, or N@S clients each sending one "
        "event every S seconds, like people using the page (default 1,50,200,50@1,200@1)",
    )
    p.add_argument("--events-per-client", type=int, help="events each client sends (default 20)")
    p.add_argument("--workdir", type=Path, help="reuse this workspace (export, Reflex dir, venv)")
    p.add_argument("--export", type=Path, help="a prebuilt frontend export (skips the build)")
    p.add_argument("--out", type=Path, default=HERE, help="where results.md/.json go")
    p.add_argument("--timeout", type=float, default=900, help="seconds for builds and starts")
    p.add_argument(
        "--render",
        action="store_true",
        help="only write results.md again from the results.json in --out (the same numbers)",
    )
    args = p.parse_args(argv)
    quick = args.quick
    args.cold_runs = args.cold_runs or (2 if quick else 10)
    args.rounds = args.rounds or (1 if quick else 2)
    args.wrk_seconds = args.wrk_seconds or (1 if quick else 10)
    args.wrk_connections = args.wrk_connections or (8 if quick else 64)
    args.clients = [
        workloads.Load.parse(n)
        for n in (args.clients or ("1,4,4@0.5" if quick else "1,50,200,50@1,200@1")).split(",")
    ]
    args.events_per_client = args.events_per_client or (3 if quick else 20)
    args.contenders = tuple(c for c in args.contenders.split(",") if c)
    args.workloads = tuple(w for w in args.workloads.split(",") if w)
    for c in args.contenders:
        if c not in ALL:
            p.error(f"unknown contender {c!r}; expected one of {', '.join(ALL)}")
    return args


def _rotate(items: tuple[str, ...], k: int) -> tuple[str, ...]:
    k %= max(1, len(items))
    return items[k:] + items[:k]


def run_cold(ws: Workspace, args: argparse.Namespace, samples: dict[str, Any]) -> None:
    names = [c for c in args.contenders if c in APP_SERVERS and c not in EVENTS_ONLY]
    cold = samples.setdefault("cold_start_s", {c: [] for c in names})
    for i in range(args.cold_runs):
        for name in _rotate(tuple(names), i):
            seconds = workloads.cold_start(ws, name, free_port(), args.timeout)
            cold[name].append(seconds)
            log(f"cold start {i + 1}/{args.cold_runs} {name}: {seconds:.2f}s")


def run_static(ws: Workspace, args: argparse.Namespace, samples: dict[str, Any], rnd: int) -> None:
    static = samples.setdefault("static", {})
    for name in _rotate(tuple(c for c in args.contenders if c not in EVENTS_ONLY), rnd):
        proc = contender(name, ws, free_port()).start()
        try:
            proc.wait_ready(args.timeout)
            root = ws.reflex_client_dir if name == REFLEX else ws.export
            targets = {"/": "/", "largest JS": largest_js(root)}
            for target, path in targets.items():
                for enc, header in workloads.ENCODINGS.items():
                    key = f"{target} [{enc}]"
                    r = workloads.wrk(
                        proc.url + path, header, args.wrk_seconds, args.wrk_connections
                    )
                    r["path"] = path  # type: ignore[assignment]
                    static.setdefault(key, {}).setdefault(name, []).append(r)
                    log(f"static {key} {name}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms")
        finally:
            proc.stop()


def run_events(ws: Workspace, args: argparse.Namespace, samples: dict[str, Any], rnd: int) -> None:
    ev = samples.setdefault("events", {})
    mem = samples.setdefault("memory", {})
    for name in _rotate(tuple(c for c in args.contenders if c in APP_SERVERS), rnd):
        proc = contender(name, ws, free_port()).start()
        try:
            proc.wait_ready(args.timeout)
            time.sleep(2)  # let start-up work settle
            idle = proc.rss()
            mem.setdefault(name, {}).setdefault("idle_rss", []).append(idle)
            log(f"memory {name}: idle {idle / 2**20:.0f} MiB")
            for load in args.clients:
                run = workloads.events(proc, load, args.events_per_client, timeout=30)
                n = load.label
                lat = sorted(run.latencies_ms)
                ev.setdefault(str(n), {}).setdefault(name, []).append(
                    {
                        "latencies_ms": run.latencies_ms,
                        "errors": run.errors,
                        "error_samples": run.error_samples,
                        "seconds": run.seconds,
                        "events": len(run.latencies_ms),
                        "rss_peak": run.rss_peak,
                        "rss_connected": run.rss_connected,
                    }
                )
                mem[name].setdefault(f"rss_peak_{n}", []).append(run.rss_peak)
                p99 = report.percentile(lat, 99) if lat else float("nan")
                log(
                    f"events N={n} {name}: {len(lat)} ok, {run.errors} errors, "
                    f"p99 {p99:.1f} ms, peak RSS {run.rss_peak / 2**20:.0f} MiB"
                )
        finally:
            proc.stop()


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.render:
        data = json.loads((args.out / "results.json").read_text())
        (args.out / "results.md").write_text(report.markdown(data))
        log(f"wrote {args.out / 'results.md'} from results.json")
        return 0
    started = time.time()
    load_before = os.getloadavg()
    samples: dict[str, Any] = {}
    try:
        ws = prepare(args.workdir, args.export, args.contenders, args.timeout)
    except BenchError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 1
    try:
        if "cold" in args.workloads:
            run_cold(ws, args, samples)
        for rnd in range(args.rounds):
            if "static" in args.workloads:
                run_static(ws, args, samples, rnd)
            if "events" in args.workloads:
                run_events(ws, args, samples, rnd)
        if "payload" in args.workloads:
            samples["payload"] = workloads.payload(ws)
    except BenchError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 1
    finally:
        ws.close()
    params = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in vars(args).items()
        if k not in ("out", "workdir", "export")
    }
    params["clients"] = [load.label for load in args.clients]
    data = {
        "machine": report.machine(),
        "parameters": params,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        # Anything else running on the machine shows here (1, 5, 15 minute load averages).
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "baselines": [c for c in args.contenders if c != WORKING],
        "samples": samples,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (args.out / "results.md").write_text(report.markdown(data))
    log(f"wrote {args.out / 'results.md'} and results.json in {data['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
