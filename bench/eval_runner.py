"""Eval runner benchmark: 1,000 cases against an upstream on 127.0.0.1 that takes 50 ms per answer.

    .venv/bin/python bench/eval_runner.py [--cases N] [--latency S] [--concurrency C] [--rounds R]
                                          [--profile cold|rerun|no-cache]

The upstream is the tests' OpenAI-compatible server (tests/upstreams), in a process of its own so
that its work does not share this process's interpreter lock, each request delayed by `--latency`.
A temporary project (keel.toml naming a provider at it, a JSONL dataset, a suite with two cheap
assertions) is run the way `keel eval run` runs it: EvalRunner, an AsyncClient, the SQLite store.

Per round, in a fresh project, each run with a fresh client (as a new `keel eval run` would be):
  cold      the first run: every answer from the upstream (and stored in the response cache)
  rerun     the unchanged suite again, a new run: every answer carried over from the cold run
            (keel.evals.reuse), none asked of the upstream or scored again
  no-cache  the unchanged suite with `--no-cache` (EvalRunner(cache=False)): every answer asked again

The ideal time of a cold run is cases × latency / concurrency. Printed: the cold run's ratio to
the ideal (target ≤ 1.5×) and the runner's overhead per case, (time − ideal) / cases; the cold
run's time over the rerun's (target ≥ 20×); the process CPU per case (all threads: the trace and
cache writers included), which depends less on what else the machine runs than wall time does.
Times are of `EvalRunner.run()`: from the start of the run until its summary is stored (traces
the recorder thread still has to write are not waited for; that flush is printed apart). A
warm-up run first imports what the first call needs. The machine may be shared: the best round
is the figure, the others are shown. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO, TARGET_SPEEDUP = 1.5, 20.0
KINDS = (("cold", True), ("rerun", True), ("no-cache", False))

SUITE = """\
name: bench
prompts:
  - name: echo
    messages: [{{role: user, content: "{{{{ text }}}}"}}]
models: [bench]
dataset: {{file: cases.jsonl}}
assertions:
  - {{type: equals}}
  - {{type: contains, value: "Echo:"}}
concurrency: {concurrency}
"""


# -- the upstream, in its own process ------------------------------------------------------------

def serve(latency: float, conn: Any) -> None:
    """The tests' OpenAI upstream; on ("arm", n) the next n requests wait `latency` seconds.
    Every command is answered with the number of requests since the last arming."""
    sys.path.insert(0, str(ROOT / "tests"))
    from upstreams import Fault, OpenAIUpstream

    with OpenAIUpstream() as up:
        conn.send(up.base_url)
        while (command := conn.recv()) != "stop":
            if command[0] == "arm":
                up.reset()
                up.script(Fault.SLOW, times=command[1], delay=latency)
            conn.send(up.count)


class Upstream:
    def __init__(self, latency: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(latency, child), daemon=True)
        self.process.start()
        self.base_url: str = self.conn.recv()

    def arm(self, requests: int) -> None:
        self.conn.send(("arm", requests))
        self.conn.recv()

    @property
    def count(self) -> int:
        self.conn.send(("count",))
        return int(self.conn.recv())

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(10)


# -- the project and one run ------------------------------------------------------------------------

def write_project(folder: Path, base_url: str, cases: int, concurrency: int) -> Path:
    (folder / "keel.toml").write_text(
        f'[providers.up]\ntype = "openai"\nbase_url = "{base_url}"\n\n'
        '[models.bench]\nprovider = "up"\nmodel = "bench-model"\n'
        'price = {input_per_mtok = 0.15, output_per_mtok = 0.60}\n')
    (folder / "evals").mkdir()
    lines = []
    for i in range(cases):
        text = f"case number {i} of the benchmark"
        lines.append(json.dumps({"id": f"c{i:05d}", "vars": {"text": text}, "expected": f"Echo: {text}"}) + "\n")
    (folder / "evals" / "cases.jsonl").write_text("".join(lines))
    path = folder / "evals" / "bench.eval.yaml"
    path.write_text(SUITE.format(concurrency=concurrency))
    return path


@dataclass
class Timing:
    seconds: float
    cpu: float
    flush: float
    calls: int
    cached: int
    items: int
    passed: int


async def run_once(path: Path, upstream: Upstream, *, cache: bool, profile: Any = None) -> Timing:
    from keel import AsyncClient
    from keel.evals.runner import EvalRunner
    from keel.evals.suite import load_suite
    from keel.store import open_store

    suite = load_suite(path)
    upstream.arm(len(suite.cases))
    async with AsyncClient(source="eval") as client:
        store = open_store(client.settings.effective_store_url)
        try:
            runner = EvalRunner(client, store, suite, cache=cache)
            if profile is not None:
                profile.start()
            started, cpu = time.perf_counter(), time.process_time()
            result = await runner.run(auto_resume=False)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            if profile is not None:
                profile.stop()
            flushed = time.perf_counter()
            client.flush(60)
            flush = time.perf_counter() - flushed
        finally:
            store.close()
    [cell] = result.summary["cells"]
    return Timing(seconds, cpu, flush, upstream.count, result.cached, cell["items"], cell["passed"])


def in_project(upstream: Upstream, cases: int, concurrency: int, runs: Any) -> None:
    """`runs(path)` inside a fresh temporary project (the current directory meanwhile)."""
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
        path = write_project(Path(tmp), upstream.base_url, cases, concurrency)
        os.chdir(tmp)
        try:
            runs(path)
        finally:
            os.chdir(ROOT)


# -- main -------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the upstream takes per answer")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", choices=[kind for kind, _ in KINDS], help="profile that run of round 1 (pyinstrument)")
    args = parser.parse_args()

    upstream = Upstream(args.latency)
    rows: dict[str, list[Timing]] = {kind: [] for kind, _ in KINDS}
    load = os.getloadavg()[0]
    try:
        in_project(upstream, 20, args.concurrency, lambda path: asyncio.run(run_once(path, upstream, cache=True)))
        for round_ in range(args.rounds):
            in_project(upstream, args.cases, args.concurrency, lambda path: one_round(path, upstream, round_, rows, args))
    finally:
        upstream.stop()
    report(rows, args, (load, os.getloadavg()[0]))


def one_round(path: Path, upstream: Upstream, round_: int, rows: dict[str, list[Timing]], args: argparse.Namespace) -> None:
    for kind, cache in KINDS:
        profile = _profiler() if args.profile == kind and round_ == 0 else None
        timing = asyncio.run(run_once(path, upstream, cache=cache, profile=profile))
        rows[kind].append(timing)
        print(f"round {round_ + 1} {kind:8}  {timing.seconds * 1000:7.1f} ms  CPU {timing.cpu * 1000:6.1f} ms  "
              f"upstream calls {timing.calls:5}  from cache {timing.cached:5}  passed {timing.passed}/{timing.items}  "
              f"(trace flush after: {timing.flush * 1000:.0f} ms)", flush=True)
        if profile is not None:
            print(profile.output_text(unicode=True, color=False, show_all=False))


def report(rows: dict[str, list[Timing]], args: argparse.Namespace, load: tuple[float, float]) -> None:
    ideal = args.cases * args.latency / args.concurrency
    best = {kind: min(timings, key=lambda t: t.seconds) for kind, timings in rows.items()}
    cold, rerun, nocache = best["cold"], best["rerun"], best["no-cache"]

    def every(kind: str) -> str:
        return ", ".join(f"{t.seconds * 1000:.0f}" for t in rows[kind])

    def cpu(kind: str) -> str:
        return f"{min(t.cpu for t in rows[kind]) / args.cases * 1e6:.0f} µs CPU per case"

    print(f"\n{args.cases} cases, upstream latency {args.latency * 1000:g} ms, concurrency {args.concurrency}: "
          f"ideal {ideal * 1000:.0f} ms; load average {load[0]:.1f} at the start, {load[1]:.1f} at the end "
          f"({os.cpu_count()} CPUs)")
    print(f"cold      {cold.seconds * 1000:7.1f} ms = {cold.seconds / ideal:.2f}× ideal (target ≤ {TARGET_RATIO}×), "
          f"runner overhead {(cold.seconds - ideal) / args.cases * 1000:.3f} ms per case; {cpu('cold')}  "
          f"[all rounds: {every('cold')} ms]")
    print(f"no-cache  {nocache.seconds * 1000:7.1f} ms = {nocache.seconds / ideal:.2f}× ideal, "
          f"upstream calls {', '.join(str(t.calls) for t in rows['no-cache'])}; {cpu('no-cache')}  "
          f"[all rounds: {every('no-cache')} ms]")
    print(f"rerun     {rerun.seconds * 1000:7.1f} ms: cold / rerun = {cold.seconds / rerun.seconds:.1f}× "
          f"(target ≥ {TARGET_SPEEDUP:g}×), upstream calls {', '.join(str(t.calls) for t in rows['rerun'])}; "
          f"{cpu('rerun')}  [all rounds: {every('rerun')} ms]")


def _profiler() -> Any:
    try:
        from pyinstrument import Profiler
    except ImportError:
        sys.exit("--profile needs pyinstrument: .venv/bin/pip install pyinstrument")
    return Profiler(async_mode="enabled")


if __name__ == "__main__":
    main()
