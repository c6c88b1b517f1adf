"""Gateway overhead benchmark: Keel's gateway against a bare Python proxy, in the same run.

    .venv/bin/python bench/gateway_overhead.py [--quick] [--duration S] [--rounds N] [--targets direct,aiohttp,httpx,keel]

An nginx mock upstream answers POST /v1/chat/completions with a fixed chat.completion; wrk drives
each target at concurrency 1 and 16. Every Python target runs on ONE uvicorn worker (uvloop,
httptools). Keel is judged by ratios to the bare aiohttp proxy measured in the same run (the
machine may be shared: absolute figures move, same-run ratios much less). Also written to
bench/out/gateway_overhead.json. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from _gateway import (
    CELLS,
    OUT,
    Procs,
    count_traces,
    ensure_tools,
    keel_project,
    run_main,
    save_figures,
    measure,
    median_cells,
    start_bare,
    start_keel,
    start_nginx,
    wrk_script,
)

TARGET_P50_ADDED_MS, TARGET_RATIO = 0.5, 0.50


def report(results: dict, traces: dict | None) -> list[dict]:
    direct = results.get("direct")
    print(f"\n{'target':<9}{'conc':>5}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}{'req/s':>10}{'CPU us/req':>12}")
    for name, cells in results.items():
        for conns, c in cells.items():
            if direct:
                c["added_p50_ms"] = c["p50_ms"] - direct[conns]["p50_ms"]
                c["added_p99_ms"] = c["p99_ms"] - direct[conns]["p99_ms"]
            added = f"{c['added_p50_ms']:>9.3f}{c['added_p99_ms']:>9.3f}" if direct else f"{'-':>9}{'-':>9}"
            cpu = f"{c['cpu_us_per_req']:>12.0f}" if c["cpu_us_per_req"] is not None else f"{'-':>12}"
            print(f"{name:<9}{conns:>5}{c['p50_ms']:>9.3f}{c['p99_ms']:>9.3f}{added}{c['rps']:>10,.0f}{cpu}")
    for name, cells in results.items():
        if any(c["non_2xx"] for c in cells.values()):
            print(f"!! {name} answered non-2xx responses: its figures are not valid")
    checks = []
    bare, keel = results.get("aiohttp"), results.get("keel")
    if bare and keel:
        for conns in (1, 16):
            ratio = keel[conns]["rps"] / bare[conns]["rps"]
            checks.append((f"throughput keel/aiohttp c={conns}", ratio, f">= {TARGET_RATIO:.2f}", ratio >= TARGET_RATIO))
        if direct:
            added = keel[1]["added_p50_ms"]
            checks.append(("added p50 keel vs direct c=1 (ms)", added, f"<= {TARGET_P50_ADDED_MS}", added <= TARGET_P50_ADDED_MS))
        print(f"\nkeel minus bare aiohttp, c=1: p50 {keel[1]['p50_ms'] - bare[1]['p50_ms']:+.3f} ms; "
              f"c=16 CPU/req {keel[16]['cpu_us_per_req'] - bare[16]['cpu_us_per_req']:+.0f} us\n")
    checks += _reliability_checks(results)
    for label, value, target, ok in checks:
        print(f"{label:<36}{value:>8.3f}  target {target:<8} {'PASS' if ok else 'FAIL'}")
    if traces:
        ok = traces["after_stop"] is not None and traces["after_stop"] >= traces["requests"]
        traces["ok"] = ok
        print(f"\nkeel traces: {traces['requests']} requests completed (+ up to {traces['in_flight_max']} cut off in flight "
              f"when wrk stops); in the store {traces['running']} while running (after <= 15 s), {traces['after_stop']} "
              f"after a clean stop: {'OK' if ok else 'TRACES MISSING: RESULT NOT VALID'}")
    return [{"name": n, "value": v, "target": t, "pass": p} for n, v, t, p in checks]


def _reliability_checks(results: dict) -> list[tuple[str, float, str, bool]]:
    """Reliability stages' share of Keel's added CPU per request, and cache hits against the bare proxy."""
    bare, keel, plain, hit = (results.get(n) for n in ("aiohttp", "keel", "norouting", "keel-hit"))
    checks = []
    if bare and keel and plain and bare[16]["cpu_us_per_req"] is not None:
        with_routing = keel[16]["cpu_us_per_req"] - bare[16]["cpu_us_per_req"]
        without = plain[16]["cpu_us_per_req"] - bare[16]["cpu_us_per_req"]
        added = with_routing / without - 1
        checks.append(("reliability stages' added overhead c=16", added, "<= 0.05", added <= 0.05))
    if bare and hit:
        for conns in (1, 16):
            ratio = hit[conns]["rps"] / bare[conns]["rps"]
            checks.append((f"cache hit keel/aiohttp c={conns}", ratio, ">= 0.80", ratio >= 0.80))
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured cell (default 10, max 120)")
    parser.add_argument("--quick", action="store_true", help="3 s cells, 1 s warm-ups")
    parser.add_argument("--rounds", type=int, default=1, help="repeat all targets N times, report medians (default 1)")
    parser.add_argument("--targets", default="direct,aiohttp,httpx,keel,norouting,keel-hit", help="comma-separated subset")
    args = parser.parse_args()
    args.duration = 3.0 if args.quick else min(max(args.duration, 1.0), 120.0)
    args.warmup = 1.0 if args.quick else min(3.0, args.duration)
    args.rounds = min(max(args.rounds, 1), 5)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    ensure_tools()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gw-", dir=OUT))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    procs, runs, traces, load = Procs(), {}, None, [os.getloadavg()[0]]
    try:
        script = wrk_script(work / "chat.lua")
        upstream = start_nginx(procs, work)
        print(f"nginx mock on {upstream}; {args.duration:g} s per cell after {args.warmup:g} s warm-up, {args.rounds} "
              f"round(s); load average {load[0]:.2f} on {os.cpu_count()} CPUs; work dir {work}", flush=True)
        servers = {"direct": (upstream, None)} if "direct" in targets else {}
        for kind in ("aiohttp", "httpx"):
            if kind == "httpx" and kind in targets and subprocess.run([sys.executable, "-c", "import httpx"], capture_output=True).returncode:
                print("  httpx    skipped: httpx is not importable in this venv")
            elif kind in targets:
                servers[kind] = start_bare(procs, work, kind, upstream)
        if "keel" in targets:
            project = keel_project(work, upstream)
            servers["keel"] = start_keel(procs, project)
        if "norouting" in targets:  # Keel with every reliability stage left out
            servers["norouting"] = start_keel(procs, keel_project(work, upstream, "norouting", "[routing]\nenabled = false\n"))
        scripts = {name: script for name in servers}
        if "keel-hit" in targets:  # deterministic requests: after the first, every one is a cache hit
            servers["keel-hit"] = start_keel(procs, keel_project(work, upstream, "keel-hit"))
            scripts["keel-hit"] = work / "chat-t0.lua"
            scripts["keel-hit"].write_text(script.read_text().replace('"max_tokens": 16', '"max_tokens": 16, "temperature": 0'))
        keel_requests = 1  # the readiness probe
        for _ in range(args.rounds):
            for name, (base, proc) in servers.items():
                cells, total = measure(name, base, proc.pid if proc else None, args, scripts[name])
                runs.setdefault(name, []).append(cells)
                keel_requests += total if name == "keel" else 0
        if "keel" in servers:
            db = project / ".keel" / "keel.db"
            traces = {"requests": keel_requests, "in_flight_max": args.rounds * sum(2 * c for _, c in CELLS), "db": str(db),
                      "running": count_traces(db, keel_requests, settle=15)}
            procs.stop(servers["keel"][1])  # a clean stop lets the recorder flush the rest
            traces["after_stop"] = count_traces(db, keel_requests, settle=10)
    finally:
        procs.stop_all()
    load.append(os.getloadavg()[0])
    results = {name: median_cells(rounds) for name, rounds in runs.items()}
    checks = report(results, traces)
    print(f"load average at start/end: {load[0]:.2f}/{load[1]:.2f} on {os.cpu_count()} CPUs (other work on the machine skews absolute figures)")
    data = {"duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds, "cpus": os.cpu_count(), "loadavg": load,
            "results": {n: {str(c): v for c, v in cells.items()} for n, cells in results.items()},
            "runs": runs, "checks": checks, "traces": traces}
    save_figures("gateway_overhead", data)


if __name__ == "__main__":
    run_main(main)
