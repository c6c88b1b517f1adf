"""Budget overhead benchmark: what a hard budget adds to the gateway's per-request cost, in the same run.

    .venv/bin/python bench/budget_overhead.py [--quick] [--duration S] [--rounds N] [--redis-url URL]
    .venv/bin/python bench/budget_overhead.py --clients [--rounds N] [--redis-url URL]

Four targets on one nginx mock upstream, each on ONE uvicorn worker, driven by wrk at concurrency
1 and 16 (machinery shared with gateway_overhead.py, in _gateway.py):

    aiohttp   the bare raw-ASGI pass-through: the baseline
    off       `keel serve`, no budgets (tracing, cost, routing, cache as by default)
    memory    the same plus a hard global budget on the in-process ledger
    redis     the same budget on the Redis ledger (`redis_url`)

The model is gpt-4o-mini with its catalog price, and the budget's limit is far above what a run can
spend, so every request reserves its worst case and settles its real cost, and none is refused.
(Far from its limit, the Redis ledger serves most reserves from a lease: see keel/budgets/leases.py.)
Each round measures every target once, in an order that rotates from round to round; each round's
figures are taken against that round's bare proxy, and medians over the rounds are reported:

    ratio     throughput / bare throughput
    added     1/throughput - 1/throughput_bare: Keel's added time per request (µs)
    share     (added with the budget - added without) / added without      target <= 10% at c=16
              (also from the targets' CPU time per request, /proc: less moved by other load)

`--stage` measures instead the budget stage's own time per call in this process (over an inner
stage that answers at once, best of the rounds), on each ledger: a figure that other work on the
machine moves far less than the gateway's, which the same code costs more in (cache misses).

`--clients` measures instead the Redis ledger's own client CPU per call (reserve + settle, the two
EVALSHAs of a request near its limit, where there are no leases) in a loop against Redis, over keel's client (`budgets/_redis.py`) and over
redis-py's asyncio client, with its pure-Python parser and with hiredis (when importable), at
concurrency 1 and 16 on uvloop: the figures behind keeping `_redis.py`.

The machine may be shared: run several rounds and read the medians and their spread. Redis keys
(`keel:budget:{spend,holds}:<budget>:…`) carry a budget name made for this run and are deleted at
the end. Figures are also written to bench/out/budget_overhead.json. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _gateway import OUT, Procs, ensure_tools, keel_project, measure, run_main, save_figures, start_bare, start_keel, start_nginx, wrk_script

TARGET_SHARE = 0.10
BUDGETS = ("memory", "redis")
LABELS = {"aiohttp": "bare aiohttp proxy", "off": "keel, no budget", "memory": "keel, budget in memory",
          "redis": "keel, budget in Redis"}


def budget_toml(name: str) -> str:
    """A hard global budget that no run can reach (a request costs ~10⁻⁵ $): every request goes
    through reserve and settle, none is refused."""
    return f'\n[[budgets]]\nname = "{name}"\nlimit = "1000000"\nperiod = "day"\nhard = true\n'


def redis_error(url: str) -> str | None:
    """Why Redis at `url` cannot be used, or None."""
    try:
        import redis
    except ImportError:
        return "the package `redis` is not installed in this venv"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"no Redis answers at {url} ({exc}); start one or pass --redis-url"
    finally:
        client.close()
    return None


def redis_buckets(url: str, budget: str, delete: bool = False) -> dict[str, dict[str, str]]:
    """The run's bucket hashes (spent, reserved, …) by key; with `delete`, every key of the run is removed."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        # RedisLedger keys: keel:budget:{spend|holds}:<budget>:<period>:<scope> (budget percent-encoded)
        keys = list(client.scan_iter(match=f"keel:budget:*:{budget}:*", count=1000))
        found = {key: client.hgetall(key) for key in keys if ":spend:" in key}
        if delete and keys:
            client.delete(*keys)
        return found
    finally:
        client.close()


def delete_keys(url: str, pattern: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def budget_notes(db: Path) -> int | None:
    """Traces in the store whose notes show a budget reservation (None: the store cannot be read)."""
    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
        return con.execute("SELECT count(*) FROM traces WHERE notes LIKE '%\"budgets\"%'").fetchone()[0]
    return None


def per_round(runs: dict[str, list[dict]], conns: int) -> dict[str, dict[str, list[float]]]:
    """Each target's figures in each round, against that round's bare proxy (and Keel without budget)."""
    out: dict[str, dict[str, list[float]]] = {}
    for i, bare in enumerate(runs["aiohttp"]):
        bare = bare[conns]
        off = runs["off"][i][conns] if "off" in runs else None
        for name, rounds in runs.items():
            cell, fig = rounds[i][conns], out.setdefault(name, {})
            add = lambda key, value: fig.setdefault(key, []).append(value)  # noqa: E731
            add("rps", cell["rps"])
            add("ratio", cell["rps"] / bare["rps"])
            add("added_us", (1 / cell["rps"] - 1 / bare["rps"]) * 1e6)
            add("cpu_us", cell["cpu_us_per_req"])
            add("added_cpu_us", cell["cpu_us_per_req"] - bare["cpu_us_per_req"])
            add("p50_ms", cell["p50_ms"])
            add("added_p50_ms", cell["p50_ms"] - bare["p50_ms"])
            if off is not None and name in BUDGETS:
                off_added = 1 / off["rps"] - 1 / bare["rps"]
                off_cpu = off["cpu_us_per_req"] - bare["cpu_us_per_req"]
                add("share", ((1 / cell["rps"] - 1 / bare["rps"]) - off_added) / off_added)
                add("cpu_share", (cell["cpu_us_per_req"] - bare["cpu_us_per_req"] - off_cpu) / off_cpu)
                add("budget_p50_ms", cell["p50_ms"] - off["p50_ms"])
    return out


def _fmt(values: list[float] | None, spec: str, spread: bool = True) -> str:
    """The median, and the min–max over rounds when there are several."""
    if not values:
        return "-"
    text = format(statistics.median(values), spec)
    if spread and len(values) > 1:
        text += f" [{format(min(values), spec)}…{format(max(values), spec)}]"
    return text


def report(runs: dict[str, list[dict]]) -> dict:
    rounds = len(runs["aiohttp"])
    print(f"\nMedians over {rounds} round(s), [min…max] over rounds; each round against its own bare proxy.")
    figures = {conns: per_round(runs, conns) for conns in (16, 1)}
    heads = ("target", "req/s", "ratio to bare", "added us/req", "CPU us/req", "added CPU us", "budget share")
    for conns, fig in figures.items():
        print(f"\nc={conns}\n{heads[0]:<8}{heads[1]:>8}  {heads[2]:<20}{heads[3]:<22}{heads[4]:<12}{heads[5]:<20}{heads[6]}")
        for name, f in fig.items():
            bare = name == "aiohttp"
            share = f"{_fmt(f.get('share'), '+.1%')}  (CPU {_fmt(f.get('cpu_share'), '+.1%', False)})" if "share" in f else ""
            print(f"{name:<8}{_fmt(f['rps'], ',.0f', False):>8}  {'1' if bare else _fmt(f['ratio'], '.3f'):<20}"
                  f"{'-' if bare else _fmt(f['added_us'], '.1f'):<22}{_fmt(f['cpu_us'], '.0f', False):<12}"
                  f"{'-' if bare else _fmt(f['added_cpu_us'], '.1f'):<20}{share}")
    one = figures[1]
    print("\nc=1 latency: p50 added to the bare proxy's, and by the budget to Keel's without")
    for name, f in one.items():
        if name != "aiohttp":
            budget = f"   budget {_fmt(f['budget_p50_ms'], '+.3f')} ms" if "budget_p50_ms" in f else ""
            print(f"  {name:<8} p50 {_fmt(f['p50_ms'], '.3f', False)} ms   added {_fmt(f['added_p50_ms'], '+.3f')} ms{budget}")
    checks = []
    for name in BUDGETS:  # the target is on time per request; CPU per request is less moved by other load
        for key, what in (("share", "time"), ("cpu_share", "CPU")):
            if key in figures[16].get(name, {}):
                share = statistics.median(figures[16][name][key])
                checks.append({"name": f"budget share of Keel's added {what}, {name}, c=16", "value": share,
                               "target": f"<= {TARGET_SHARE:.0%}", "pass": share <= TARGET_SHARE})
    print()
    for check in checks:
        print(f"{check['name']:<48}{check['value']:>+8.1%}  target {check['target']:<6} {'PASS' if check['pass'] else 'FAIL'}")
    for name, cells in runs.items():
        if any(cell[c]["non_2xx"] for cell in cells for c in cell):
            print(f"!! {name} answered non-2xx responses: its figures are not valid")
    return {"per_round": {str(c): f for c, f in figures.items()}, "checks": checks}


def clients(url: str, rounds: int, calls: int = 10_000) -> None:
    """Client CPU per reserve + settle of RedisLedger over each Redis client (see the docstring)."""
    import asyncio
    from decimal import Decimal

    import redis
    import redis.asyncio as aredis
    import uvloop
    from redis.asyncio.connection import _AsyncHiredisParser, _AsyncRESP2Parser

    from keel.budgets import Bucket, Hold, RedisLedger
    from keel.budgets.redis_scripts import SHAS

    class RedisPyLedger(RedisLedger):
        """The same ledger and scripts, its commands sent by redis-py."""

        def __init__(self, prefix: str, parser: type) -> None:
            super().__init__(url, prefix)
            self.pool = aredis.Redis.from_url(url, parser_class=parser)

        async def _run(self, script, keys, args, on_cancel=None):  # type: ignore[no-untyped-def]
            try:
                return await self.pool.evalsha(SHAS[script], len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                return await self.pool.eval(script, len(keys), *keys, *args)

        async def aclose(self) -> None:
            await self.pool.aclose()

    kinds = {"keel _redis.py": lambda prefix: RedisLedger(url, prefix),
             "redis-py": lambda prefix: RedisPyLedger(prefix, _AsyncRESP2Parser)}
    if redis.utils.HIREDIS_AVAILABLE:
        kinds["redis-py + hiredis"] = lambda prefix: RedisPyLedger(prefix, _AsyncHiredisParser)
    # Soft, and too small for leases (keel/budgets/leases.py): every call goes to Redis, none is refused.
    bucket = Bucket("bench", "global", "total", Decimal("0.1"), False, None)
    holds, actual = [Hold.of(bucket, Decimal("0.000053"))], [11_000]  # settled in ledger units (10⁻⁹)

    async def run(ledger: RedisLedger, concurrency: int) -> float:
        async def worker(w: int, k: int) -> None:
            for i in range(k):
                assert await ledger.reserve(f"h{w}-{i}", holds) is None
                await ledger.settle(f"h{w}-{i}", holds, actual)

        await worker(-1, 200)  # connect, load the scripts, warm up
        start = time.process_time()
        await asyncio.gather(*(worker(w, calls // concurrency) for w in range(concurrency)))
        used = time.process_time() - start
        await ledger.aclose()
        return used / calls * 1e6

    print(f"client CPU per call (reserve + settle), µs: {calls:,} calls per cell, {rounds} round(s), "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if not redis.utils.HIREDIS_AVAILABLE:
        print("  (hiredis is not installed: redis-py + hiredis not measured)")
    found: dict[tuple[int, str], list[float]] = {}
    for _ in range(rounds):
        for concurrency in (1, 16):
            for name, make in kinds.items():
                prefix = f"keel-bench:{os.urandom(4).hex()}"
                try:
                    found.setdefault((concurrency, name), []).append(uvloop.run(run(make(prefix), concurrency)))
                finally:
                    delete_keys(url, prefix + ":*")
    for concurrency in (1, 16):
        mine = statistics.median(found[concurrency, "keel _redis.py"])
        print(f"c={concurrency}")
        for name in kinds:
            values = found[concurrency, name]
            print(f"  {name:<20}{_fmt(values, '.1f'):<24}{statistics.median(values) - mine:+.1f} vs _redis.py")


def _stage_inputs(budget: str) -> tuple:
    """Settings with one hard budget, a request, its answer, and an inner stage that answers at once."""
    from keel.pipeline import Call, Stage
    from keel.settings import Settings
    from keel.types import ChatRequest, ChatResponse

    settings = Settings.model_validate({
        "providers": {"mock": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "pricing_id": "openai"}},
        "models": {"mock": {"provider": "mock", "model": "gpt-4o-mini"}},
        "budgets": [{"name": budget, "limit": "1000000", "period": "day", "hard": True}]})
    answer = ChatResponse.model_validate({
        "id": "a", "model": "gpt-4o-mini", "created": 0, "usage": {"prompt_tokens": 12, "completion_tokens": 30},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]})
    request = ChatRequest.model_validate({"model": "mock", "max_tokens": 100, "messages": [{"role": "user", "content": "hello " * 10}]})

    class Answers(Stage):
        def __init__(self) -> None:
            pass

        async def complete(self, call: Call) -> ChatResponse:
            return answer

        def stream(self, call: Call):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    return settings, request, Answers()


def stage_alone(url: str | None, rounds: int, calls: int = 20_000) -> None:
    """The budget stage's own time per call, in this process: the stage over an inner stage that
    answers at once, against that inner stage alone (best of `rounds`), on each ledger."""
    import asyncio

    from keel import AsyncClient
    from keel.budgets import BudgetStage, MemoryLedger, RedisLedger
    from keel.budgets.worst_case import Candidates
    from keel.pipeline import Call

    name = f"bench-{os.urandom(6).hex()}"
    settings, request, inner = _stage_inputs(name)

    async def per_call(stage: object, target: object) -> float:
        started = time.perf_counter()
        for i in range(calls):
            await stage.complete(Call(request=request, target=target, trace_id="t"))  # type: ignore[attr-defined,arg-type]
            if i % 8 == 0:
                await asyncio.sleep(0)  # as a server's loop would: background work (lease top-ups, flushes) runs
        return (time.perf_counter() - started) / calls * 1e6

    async def measure(ledger: object) -> tuple[float, float]:
        client = AsyncClient(settings, record=False)
        target = client.resolve("mock")
        budgeted = BudgetStage(inner, settings.budgets, ledger, client.prices, models=Candidates(settings))  # type: ignore[arg-type]
        try:
            await per_call(budgeted, target)  # warm: plans, leases
            added = [await per_call(budgeted, target) - await per_call(inner, target) for _ in range(rounds)]
            return min(added), await per_call(inner, target)
        finally:
            await budgeted.aclose()
            await client.aclose()

    ledgers = {"memory": MemoryLedger}
    if url is not None:
        ledgers["redis"] = lambda: RedisLedger(url, f"keel-bench:{name}")  # type: ignore[assignment,return-value]
    print(f"budget stage alone, {calls:,} calls, best of {rounds} round(s):")
    for kind, make in ledgers.items():
        added, bare = asyncio.run(measure(make()))
        print(f"  {kind:<8} +{added:.1f} µs per call (the inner stage alone: {bare:.1f} µs)")
    if url is not None:
        delete_keys(url, f"keel-bench:{name}:*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured cell (default 10, max 120)")
    parser.add_argument("--quick", action="store_true", help="3 s cells, 1 s warm-ups")
    parser.add_argument("--rounds", type=int, default=3, help="measure every target N times, report medians (default 3, max 10)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="Redis for the Redis ledger")
    parser.add_argument("--clients", action="store_true", help="only the Redis clients' CPU per reserve + settle")
    parser.add_argument("--stage", action="store_true", help="only the budget stage's own time per call, in process")
    args = parser.parse_args()
    if args.stage:
        return stage_alone(None if redis_error(args.redis_url) else args.redis_url, min(max(args.rounds, 1), 10))
    if args.clients:
        problem = redis_error(args.redis_url)
        if problem:
            sys.exit(problem)
        return clients(args.redis_url, min(max(args.rounds, 1), 10))
    args.duration = 3.0 if args.quick else min(max(args.duration, 1.0), 120.0)
    args.warmup = 1.0 if args.quick else min(3.0, args.duration)
    args.rounds = min(max(args.rounds, 1), 10)
    ensure_tools()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="budget-", dir=OUT))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    budget = f"bench-{os.urandom(6).hex()}"
    no_redis = redis_error(args.redis_url)
    procs, runs, served, load, projects, redis_state = Procs(), {}, {}, [os.getloadavg()[0]], {}, None
    try:
        script = wrk_script(work / "chat.lua")
        upstream = start_nginx(procs, work)
        print(f"nginx mock on {upstream}; {args.duration:g} s per cell after {args.warmup:g} s warm-up, {args.rounds} "
              f"round(s); load average {load[0]:.2f} on {os.cpu_count()} CPUs; work dir {work}", flush=True)
        servers = {"aiohttp": start_bare(procs, work, "aiohttp", upstream)}
        projects["off"] = keel_project(work, upstream, "off")
        projects["memory"] = keel_project(work, upstream, "memory", budget_toml(budget))
        if no_redis:
            print(f"  redis    skipped: {no_redis}")
        else:
            projects["redis"] = keel_project(work, upstream, "redis", budget_toml(budget), top=f'redis_url = "{args.redis_url}"\n')
        for name, project in projects.items():
            servers[name] = start_keel(procs, project)
        names = list(servers)
        for i in range(args.rounds):
            order = names[i % len(names):] + names[:i % len(names)]
            print(f"round {i + 1}/{args.rounds}: {', '.join(order)}", flush=True)
            for name in order:
                base, proc = servers[name]
                cells, total = measure(name, base, proc.pid, args, script)
                runs.setdefault(name, []).append(cells)
                served[name] = served.get(name, 1) + total  # 1: the readiness probe
        if "redis" in projects:
            time.sleep(2)  # requests wrk left in flight finish, and the leases, unused for a second, go back
            redis_state = redis_buckets(args.redis_url, budget)
    finally:
        procs.stop_all()
        if not no_redis:
            with contextlib.suppress(Exception):
                redis_buckets(args.redis_url, budget, delete=True)
    load.append(os.getloadavg()[0])
    print("\n" + "\n".join(f"  {name:<8} {label}" for name, label in LABELS.items() if name in runs))
    result = report(runs)
    print("\nbudget path exercised: traces noting a reservation (after a clean stop), of the requests wrk completed")
    for name in BUDGETS:
        if name in projects:
            print(f"  {name:<8} {budget_notes(projects[name] / '.keel' / 'keel.db')} of {served[name]}", end="")
            print("" if name != "redis" else f"; Redis bucket {json.dumps(redis_state)} (deleted)")
    print(f"load average at start/end: {load[0]:.2f}/{load[1]:.2f} on {os.cpu_count()} CPUs (other work on the machine "
          "skews absolute figures and widens the spread; same-round ratios move much less)")
    data = {"duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds, "cpus": os.cpu_count(),
            "loadavg": load, "runs": runs, "redis": redis_state, **result}
    save_figures("budget_overhead", data)


if __name__ == "__main__":
    run_main(main)
