"""What tracing costs the request path, and whether the writer keeps up (SQLite by default).

    .venv/bin/python bench/recorder_overhead.py [--url sqlite:///… | postgresql://…] [--seconds S]

Every figure is a ratio to a baseline measured in the same run, the baseline being what any
crash-safe recorder must do: `orjson.dumps` of the record plus one `os.write` to an O_APPEND file.

1. record() per call in a tight loop, the writer thread storing what it gets meanwhile.
2. A paced stream of simulated requests (parse a body, build the trace, answer, record) at fixed
   rates: the request thread's time per request, its worst 10 ms tick (a stall shows up here),
   and how far the writer lags. The store writes one INSERT … SELECT from a JSON array per batch;
   the same stream with SQLAlchemy `executemany` of parsed rows is shown for comparison.
3. The writer thread's own CPU per stored record, for both insert strategies.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert

from keel.store import Store, open_store
from keel.store.schema import traces
from keel.tracing import Recorder

BODY = orjson.dumps({"model": "small", "messages": [{"role": "user", "content": "x" * 600}], "temperature": 0.2})
TICK = 0.01


def sample_trace() -> dict[str, Any]:
    now = time.time()
    return {
        "id": uuid.uuid4().hex, "parent_id": None, "kind": "chat", "source": "gateway",
        "started_at": now, "ended_at": now + 0.4, "latency_ms": 400.0, "ttft_ms": 80.0,
        "provider": "openai", "model": "small", "upstream_model": "gpt-4o-mini-2024-07-18", "fingerprint": "fp_1",
        "request": {"messages": [{"role": "user", "content": "Summarise this paragraph in one line."}],
                    "params": {"temperature": 0.2, "max_tokens": 64}},
        "response": {"message": {"role": "assistant", "content": "A one-line summary."}, "finish_reason": "stop"},
        "prompt_tokens": 42, "completion_tokens": 7, "cached_tokens": 0, "usage_estimated": False,
        "cost": Decimal("0.0000105"), "cost_source": "catalog", "currency": "USD", "status": "ok",
        "error_class": None, "error_message": None, "stream": False, "tags": {"team": "search"},
    }


def simulated_request(record: Callable[[dict[str, Any]], None]) -> None:
    body = orjson.loads(BODY)
    trace = sample_trace()
    trace["request"] = {"messages": body["messages"], "params": {"temperature": body["temperature"]}}
    orjson.dumps({"id": trace["id"], "choices": [{"message": trace["response"]["message"]}]})
    record(trace)


class ExecutemanyStore(Store):
    """The alternative writer strategy: parse each line, then one executemany of the rows."""

    def insert_trace_jsonl(self, jsonl: bytes | bytearray) -> int:
        rows = [orjson.loads(line) for line in jsonl.split(b"\n") if line]
        with self.engine.begin() as connection:
            connection.execute(insert(traces).prefix_with("OR IGNORE", dialect="sqlite"), rows)
        return len(rows)


class Baseline:
    def __init__(self, work: Path) -> None:
        self._fd = os.open(work / "baseline.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def record(self, trace: dict[str, Any]) -> None:
        os.write(self._fd, orjson.dumps(trace, default=str, option=orjson.OPT_APPEND_NEWLINE))

    def close(self) -> None:
        os.close(self._fd)


def tight_loop(url: str, work: Path, count: int = 50_000, rounds: int = 3) -> None:
    baseline, recorder = Baseline(work), Recorder(url, work / "journal-tight")
    base, rec = [], []
    for _ in range(rounds):
        for target, results in ((baseline.record, base), (recorder.record, rec)):
            trace = sample_trace()
            ids = [uuid.uuid4().hex for _ in range(count)]
            start = time.perf_counter()
            for trace_id in ids:
                trace["id"] = trace_id
                target(trace)
            results.append((time.perf_counter() - start) / count * 1e6)
    baseline.close()
    assert recorder.close(120), "the writer did not catch up"
    b, r = statistics.median(base), statistics.median(rec)
    print(f"1. record() {r:5.1f} µs/call, baseline {b:5.1f} µs/call: ratio {r / b:4.2f} "
          f"(median of {rounds} rounds of {count:,}, writer storing meanwhile)")


def paced(recorder: Recorder | Baseline, rate: int, seconds: float) -> tuple[float, float, int]:
    """(µs of request-thread time per request, worst tick in ms, worst backlog in records)."""
    per_tick, busy, worst_tick, worst_lag = max(1, int(rate * TICK)), 0.0, 0.0, 0
    ticks = int(seconds / TICK)
    start = time.perf_counter()
    for step in range(ticks):
        began = time.perf_counter()
        for _ in range(per_tick):
            simulated_request(recorder.record)
        spent = time.perf_counter() - began
        busy, worst_tick = busy + spent, max(worst_tick, spent)
        if isinstance(recorder, Recorder):
            worst_lag = max(worst_lag, recorder.lag)
        time.sleep(max(0.0, start + (step + 1) * TICK - time.perf_counter()))
    return busy / (ticks * per_tick) * 1e6, worst_tick * 1000, worst_lag


def paced_stream(url: str, work: Path, seconds: float) -> None:
    import keel.store.sql

    print(f"2. paced requests, {seconds:.0f} s per run: request-thread µs/request (ratio to baseline), "
          "worst 10 ms tick, writer backlog, final flush")
    for rate in (2_000, 5_000, 10_000):
        baseline = Baseline(work)
        base_us, base_tick, _ = paced(baseline, rate, seconds)
        baseline.close()
        print(f"   {rate:>6}/s  baseline       {base_us:5.1f} µs        worst tick {base_tick:5.1f} ms")
        for name, store_class in (("json array", Store), ("executemany", ExecutemanyStore)):
            keel.store.sql.Store = store_class  # type: ignore[misc]  # what open_store builds
            recorder = Recorder(url, work / f"journal-{rate}-{name}")
            try:
                us, tick, lag = paced(recorder, rate, seconds)
                flushed = time.perf_counter()
                assert recorder.close(120), "the writer did not catch up"
            finally:
                keel.store.sql.Store = Store  # type: ignore[misc]
            print(f"           recorder/{name:<11} {us:5.1f} µs ({us / base_us:4.2f})  worst tick {tick:5.1f} ms"
                  f"  backlog ≤ {lag:,} ({lag / rate * 1000:.0f} ms)  flush {(time.perf_counter() - flushed) * 1000:.0f} ms")


def writer_cpu(url_for: Callable[[str], str], batches: int = 10, size: int = 1000) -> None:
    results = {}
    for name, store_class in (("json array", Store), ("executemany", ExecutemanyStore)):
        with open_store(url_for(name)) as opened:
            store = store_class(opened.engine)
            work = [b"".join(orjson.dumps(sample_trace(), default=str) + b"\n" for _ in range(size))
                    for _ in range(batches)]
            start = time.thread_time()
            for jsonl in work:
                store.insert_trace_jsonl(jsonl)
            results[name] = (time.thread_time() - start) / (batches * size) * 1e6
    a, e = results["json array"], results["executemany"]
    print(f"3. writer CPU per record: json array {a:5.1f} µs, executemany {e:5.1f} µs: ratio {a / e:4.2f} "
          "(the json array runs inside the database with the GIL released; executemany takes the GIL per row)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="store URL (default: a SQLite file in a temporary directory)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each paced run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = args.url or f"sqlite:///{work / 'keel.db'}"
        print(f"store: {url.split('@')[-1]}   load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        tight_loop(url, work)
        paced_stream(url, work, args.seconds)
        writer_cpu(lambda name: args.url or f"sqlite:///{work / name.replace(' ', '-')}.db")  # fresh tables


if __name__ == "__main__":
    main()
