"""What tracing costs the request path, and whether the writer keeps up (SQLite by default).

    .venv/bin/python bench/recorder_overhead.py [--url sqlite:///… | postgresql://…] [--records N]

1. record() per call, against a baseline measured in the same run: `orjson.dumps` + one `os.write`
   to an O_APPEND file (the least any crash-safe recorder can do). The writer thread runs during
   the record() rounds, so GIL contention is included.
2. The writer's CPU per stored record: one INSERT … SELECT from a JSON array per batch (what the
   store does) against SQLAlchemy `executemany` of parsed rows.
3. Writer lag with a steady stream of records: the largest backlog seen, and how long the final
   flush takes after the stream stops.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert

from keel.store import Store, open_store
from keel.store.schema import traces
from keel.tracing import Recorder


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


def per_call_us(fn: Any, ids: list[str], record: dict[str, Any]) -> float:
    start = time.perf_counter()
    for trace_id in ids:
        record["id"] = trace_id
        fn(record)
    return (time.perf_counter() - start) / len(ids) * 1e6


def hot_path(url: str, work: Path, count: int, rounds: int = 3) -> None:
    record = sample_trace()
    fd = os.open(work / "baseline.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def baseline(r: dict[str, Any]) -> None:
        os.write(fd, orjson.dumps(r, default=str, option=orjson.OPT_APPEND_NEWLINE))

    recorder = Recorder(url, work / "journal")
    base, rec = [], []
    for _ in range(rounds):
        base.append(per_call_us(baseline, [uuid.uuid4().hex for _ in range(count)], record))
        rec.append(per_call_us(recorder.record, [uuid.uuid4().hex for _ in range(count)], record))
    os.close(fd)
    assert recorder.close(60), "the writer did not catch up"
    b, r = statistics.median(base), statistics.median(rec)
    print(f"record():   {r:6.2f} µs/call   baseline dumps+os.write: {b:6.2f} µs/call   ratio {r / b:4.2f}"
          f"   (median of {rounds} rounds of {count:,})")


def writer_cpu(store: Store, batches: int = 20, size: int = 500) -> None:
    def lines() -> list[bytes]:
        return [orjson.dumps(sample_trace(), default=str) for _ in range(size)]

    def json_array(batch: list[bytes]) -> None:
        store.insert_trace_lines(batch)

    def executemany(batch: list[bytes]) -> None:
        with store.engine.begin() as connection:
            connection.execute(insert(traces), [orjson.loads(line) for line in batch])

    results = {}
    for name, insert_batch in (("json array", json_array), ("executemany", executemany)):
        work = [lines() for _ in range(batches)]
        start = time.thread_time()
        for batch in work:
            insert_batch(batch)
        results[name] = (time.thread_time() - start) / (batches * size) * 1e6
    a, e = results["json array"], results["executemany"]
    print(f"writer CPU: {a:6.2f} µs/record with one INSERT … SELECT per batch, {e:6.2f} with executemany"
          f"   ratio {a / e:4.2f}   ({batches} batches of {size})")


def writer_lag(url: str, work: Path, rate: int, seconds: float) -> None:
    recorder = Recorder(url, work / f"journal-{rate}")
    worst, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.wait(0.01):
            worst[0] = max(worst[0], recorder.lag)

    watcher = threading.Thread(target=watch)
    watcher.start()
    record, tick, per_tick = sample_trace(), 0.01, max(1, int(rate * 0.01))
    start = time.perf_counter()
    for step in range(int(seconds / tick)):
        for _ in range(per_tick):
            record["id"] = uuid.uuid4().hex
            recorder.record(record)
        time.sleep(max(0.0, start + (step + 1) * tick - time.perf_counter()))
    done = time.perf_counter()
    assert recorder.flush(60)
    catch_up = time.perf_counter() - done
    stop.set()
    watcher.join()
    recorder.close()
    print(f"writer lag at {rate:>5}/s for {seconds:.0f}s: worst backlog {worst[0]:6,} records "
          f"({worst[0] / rate * 1000:6.1f} ms of traffic), final flush {catch_up * 1000:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="store URL (default: a SQLite file in a temporary directory)")
    parser.add_argument("--records", type=int, default=100_000, help="records per hot-path round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = args.url or f"sqlite:///{work / 'keel.db'}"
        print(f"store: {url}")
        hot_path(url, work, args.records)
        with open_store(url) as store:
            writer_cpu(store)
        for rate in (1_000, 5_000, 10_000):
            writer_lag(url, work, rate, seconds=3)


if __name__ == "__main__":
    main()
