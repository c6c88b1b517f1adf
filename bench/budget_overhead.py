"""Budget overhead benchmark: what a hard budget adds to the gateway's per-request overhead, in the same run.

    .venv/bin/python bench/budget_overhead.py [--quick] [--duration S] [--rounds N] [--redis-url URL]
    .venv/bin/python bench/budget_overhead.py --stage [--rounds N]
    .venv/bin/python bench/budget_overhead.py --clients [--rounds N] [--redis-url URL]

On one nginx mock upstream, each server on ONE uvicorn worker, driven by wrk (machinery shared
with gateway_overhead.py, in _gateway.py):

    direct    wrk straight to the mock: what a request costs without a gateway
    aiohttp   a bare raw-ASGI pass-through proxy: the least a Python gateway costs
    memory    `keel serve` (tracing, cost, routing, cache as by default) with a hard budget on the
              in-process ledger, scoped to tenant acme (scope = "tag:tenant=acme")
    redis     the same with the budget on the Redis ledger (`redis_url`)

Each Keel server is measured with requests naming tenant acme (`on`: the budget reserves each
one's worst case and settles its real cost; its limit is far above what a run can spend, so none
is refused) and tenant other (`off`: the budget does not count them). The budget's work is the
only difference between the two, and both run in the same process: separate processes differ
by themselves by as much as the figure sought (hash seeds, memory layout, start order), which is
what made an earlier version of this benchmark, one server per configuration, unable to resolve
10%. A control cell (memory server, tenant another) measures the method's own noise, ideally 0.

Every round measures each cell once at concurrency 1 and once at 16, for DURATION seconds each,
in an order that rotates from round to round and is reversed every other round (a cell runs
faster right after a cell of its own server). A cell starts with its server idle and counts the
server's CPU until it is idle again, so each cell pays for its own traces (the trace writer runs
behind the requests). The gateway's per-request overhead is what a request costs through it
beyond going direct, as bench/gateway_overhead.py and the foundation issue measure it; per
round, the budget's share of it (target <= 10%):

    p50 c=1    (p50 on - p50 off) / (p50 off - p50 direct): added latency of one request at a time
    time c=16  the same from 1/throughput at concurrency 16
    CPU c=16   (CPU on - CPU off) / CPU off, the server's CPU time per request (going direct costs
               no gateway CPU)

and, stricter, its share of only what Keel adds beyond the bare Python proxy:

    CPU c=16 beyond a bare proxy   (CPU on - CPU off) / (CPU off - CPU aiohttp)

The median share over the rounds is reported with a distribution-free 95% confidence interval;
the verdict is PASS when the whole interval is at or below 10%, FAIL when it is all above, and
NOT RESOLVED otherwise (run more rounds). The `off` requests still pass through the budget stage
(it checks whether the budget counts them); `--stage` measures that pass-through in-process.

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
import math
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _gateway import (OUT, Procs, cpu_seconds, ensure_tools, keel_project, run_main, run_wrk, save_figures, start_bare, start_keel,
                      start_nginx, wrk_script)

TARGET_SHARE = 0.10
BUDGETS = ("memory", "redis")
#: Each cell: (its name, the server it is sent to, the tenant its requests name). Only tenant
#: "acme" is counted by the budget, so a server's cells differ in nothing but the budget's work.
CELLS = (("direct", "nginx", "other"), ("aiohttp", "aiohttp", "other"),
         ("memory:off", "memory", "other"), ("memory:again", "memory", "another"), ("memory:on", "memory", "acme"),
         ("redis:off", "redis", "other"), ("redis:on", "redis", "acme"))
#: The share each check is about: (name, cell with the budget, the same server's cell without).
SHARES = (("memory", "memory:on", "memory:off"), ("redis", "redis:on", "redis:off"),
          ("control", "memory:again", "memory:off"))
#: The figures judged: (name, concurrency, what the share is of).
FIGURES = (("p50 c=1", 1, "the gateway's added p50 latency"), ("time c=16", 16, "the gateway's added time per request"),
           ("CPU c=16", 16, "the gateway's CPU per request"), ("CPU c=16 beyond a bare proxy", 16, "Keel's added CPU beyond a bare proxy"))
CONCURRENCIES = (1, 16)
LABELS = {"direct": "wrk straight to the nginx mock: no gateway",
          "aiohttp": "bare aiohttp proxy (the least a Python gateway costs)",
          "memory:off": "keel, hard budget in memory, requests it does not count (tenant other)",
          "memory:again": "the same, tenant another: the control, measuring the method's own noise",
          "memory:on": "the same server, requests the budget counts (tenant acme): reserve + settle",
          "redis:off": "keel, the budget in Redis, requests it does not count",
          "redis:on": "the same server, requests the budget counts"}


def budget_toml(name: str) -> str:
    """A hard budget on tenant acme's calls that no run can reach (a request costs ~10⁻⁵ $): every
    request of that tenant goes through reserve and settle, none is refused."""
    return f'\n[[budgets]]\nname = "{name}"\nscope = "tag:tenant=acme"\nlimit = "1000000"\nperiod = "day"\nhard = true\n'


def tenant_script(work: Path, tenant: str) -> Path:
    """The wrk script of the shared request, naming `tenant` (X-Keel-Tenant)."""
    path = wrk_script(work / f"chat-{tenant}.lua")
    path.write_text(path.read_text() + f'wrk.headers["X-Keel-Tenant"] = "{tenant}"\n')
    return path


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


def idle(pid: int, timeout: float = 15.0) -> float:
    """Wait until the process has stopped working (its trace writer, which runs behind the
    requests, caught up): less than a tick of CPU in 0.2 s. Returns its CPU seconds then."""
    deadline, used = time.monotonic() + timeout, cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        before, used = used, cpu_seconds(pid)
        if used - before <= 0.01:
            break
    return used


def cell(base: str, pid: int | None, seconds: float, script: Path, conns: int) -> dict:
    """One wrk run at `conns` connections against `base`, started with the server idle, and its CPU
    time per request counted until the server is idle again, so that each cell pays for its own
    traces (no server process, going direct: no CPU)."""
    cpu = idle(pid) if pid else 0.0
    found = run_wrk(base, min(conns, 2), conns, seconds, script)
    found["cpu_us_per_req"] = (idle(pid) - cpu) / max(found["requests"], 1) * 1e6 if pid else 0.0
    return found


def shares(runs: dict[int, dict[str, list[dict]]]) -> dict[str, dict[str, list[float]]]:
    """Per round, what the budget adds to each figure (FIGURES) as a share of it: (on - off) / (off
    - baseline), all cells from the same round."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, on_cell, off_cell in SHARES:
        if on_cell not in runs[16]:
            continue
        fig = out[name] = {figure: [] for figure, _, _ in FIGURES}
        for direct, off, on in zip(runs[1]["direct"], runs[1][off_cell], runs[1][on_cell], strict=True):
            fig["p50 c=1"].append((on["p50_ms"] - off["p50_ms"]) / (off["p50_ms"] - direct["p50_ms"]))
        fast = runs[16]
        for direct, bare, off, on in zip(fast["direct"], fast["aiohttp"], fast[off_cell], fast[on_cell], strict=True):
            fig["time c=16"].append((1 / on["rps"] - 1 / off["rps"]) / (1 / off["rps"] - 1 / direct["rps"]))
            fig["CPU c=16"].append((on["cpu_us_per_req"] - off["cpu_us_per_req"]) / off["cpu_us_per_req"])
            fig["CPU c=16 beyond a bare proxy"].append(
                (on["cpu_us_per_req"] - off["cpu_us_per_req"]) / (off["cpu_us_per_req"] - bare["cpu_us_per_req"]))
    return out


def median_interval(values: list[float]) -> tuple[float, float, float]:
    """The median and a distribution-free 95% confidence interval for it (order statistics: the
    median lies between the k-th smallest and the k-th largest value with probability >= 95%)."""
    ordered, n = sorted(values), len(values)
    k = 0  # the largest k with P(Binomial(n, 1/2) < k) <= 2.5%, found by summing the tail
    tail = 0.0
    for j in range(n // 2 + 1):
        tail += math.comb(n, j) / 2**n
        if tail > 0.025:
            break
        k = j + 1
    if k == 0:  # too few rounds for any interval
        return statistics.median(ordered), ordered[0], ordered[-1]
    return statistics.median(ordered), ordered[k - 1], ordered[n - k]


def verdict(low: float, high: float) -> str:
    if high <= TARGET_SHARE:
        return "PASS"
    if low > TARGET_SHARE:
        return "FAIL"
    return "NOT RESOLVED (the interval straddles the target: run more rounds)"


def report(runs: dict[int, dict[str, list[dict]]]) -> dict:
    rounds = len(runs[16]["direct"])
    print(f"\n{rounds} rounds; medians over rounds (added: beyond going direct)")
    print(f"{'cell':<14}{'p50 us c=1':>12}{'added':>8}{'req/s c=16':>12}{'added us/req':>14}{'CPU us/req':>12}")
    for name in runs[16]:
        p50 = [1e3 * c["p50_ms"] for c in runs[1][name]]
        added_p50 = [1e3 * (c["p50_ms"] - d["p50_ms"]) for c, d in zip(runs[1][name], runs[1]["direct"])]
        added = [1e6 * (1 / c["rps"] - 1 / d["rps"]) for c, d in zip(runs[16][name], runs[16]["direct"])]
        print(f"{name:<14}{statistics.median(p50):>12.0f}{statistics.median(added_p50):>8.0f}"
              f"{statistics.median(c['rps'] for c in runs[16][name]):>12,.0f}{statistics.median(added):>14.1f}"
              f"{statistics.median(c['cpu_us_per_req'] for c in runs[16][name]):>12.0f}")
    found, checks = shares(runs), []
    print("\nshare of the gateway's per-request overhead that the budget adds (on vs off, same server, same round):")
    print("median [95% confidence interval of the median]")
    for figure, conns, of in FIGURES:
        print(f"  {figure}: of {of}")
        for name, fig in found.items():
            mid, low, high = median_interval(fig[figure])
            line = f"    {name:<9}{mid:>+7.1%}  [{low:+.1%} … {high:+.1%}]"
            if name in BUDGETS:
                checks.append({"name": f"budget share of {of}, {name}, c={conns}", "value": mid,
                               "interval": [low, high], "target": f"<= {TARGET_SHARE:.0%}", "verdict": verdict(low, high)})
                line += f"  target <= {TARGET_SHARE:.0%}: {verdict(low, high)}"
            else:
                line += "  (two cells without the budget: the method's own noise, ideally 0)"
            print(line)
    for conns in CONCURRENCIES:
        for name, cells in runs[conns].items():
            if any(c["non_2xx"] for c in cells):
                print(f"!! {name} answered non-2xx responses at c={conns}: its figures are not valid")
    return {"shares": found, "checks": checks}


def _fmt(values: list[float], spec: str) -> str:
    """The median, and the min–max over rounds when there are several."""
    text = format(statistics.median(values), spec)
    return text + (f" [{format(min(values), spec)}…{format(max(values), spec)}]" if len(values) > 1 else "")


def _client_kinds(url: str) -> dict:
    """RedisLedger over keel's client, and over redis-py's (pure-Python parser, and hiredis when importable)."""
    import redis
    import redis.asyncio as aredis
    from redis.asyncio.connection import _AsyncHiredisParser, _AsyncRESP2Parser

    from keel.budgets import RedisLedger
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
    return kinds


def clients(url: str, rounds: int, calls: int = 10_000) -> None:
    """Client CPU per reserve + settle of RedisLedger over each Redis client (see the docstring)."""
    import asyncio
    from decimal import Decimal

    import redis
    import uvloop

    from keel.budgets import Bucket, Hold, RedisLedger

    kinds = _client_kinds(url)
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


def _stage_inputs(budget: str, scope: str = "global") -> tuple:
    """Settings with one hard budget, a request, its answer, and an inner stage that answers at once."""
    from keel.pipeline import Call, Stage
    from keel.settings import Settings
    from keel.types import ChatRequest, ChatResponse

    settings = Settings.model_validate({
        "providers": {"mock": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "pricing_id": "openai"}},
        "models": {"mock": {"provider": "mock", "model": "gpt-4o-mini"}},
        "budgets": [{"name": budget, "scope": scope, "limit": "1000000", "period": "day", "hard": True}]})
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

    async def passing() -> float:
        """A call the budget does not count (scoped to another tenant), against no budget stage."""
        settings, _, _ = _stage_inputs(name, "tag:tenant=acme")
        client = AsyncClient(settings, record=False)
        target = client.resolve("mock")
        stage = BudgetStage(inner, settings.budgets, MemoryLedger(), client.prices, models=Candidates(settings))  # type: ignore[arg-type]
        try:
            await per_call(stage, target)
            return min([await per_call(stage, target) - await per_call(inner, target) for _ in range(rounds)])
        finally:
            await client.aclose()

    ledgers = {"memory": MemoryLedger}
    if url is not None:
        ledgers["redis"] = lambda: RedisLedger(url, f"keel-bench:{name}")  # type: ignore[assignment,return-value]
    print(f"budget stage alone, {calls:,} calls, best of {rounds} round(s):")
    for kind, make in ledgers.items():
        added, bare = asyncio.run(measure(make()))
        print(f"  {kind:<8} +{added:.1f} µs per call (the inner stage alone: {bare:.1f} µs)")
    print(f"  a call the budget does not count: +{asyncio.run(passing()):.1f} µs per call")
    if url is not None:
        delete_keys(url, f"keel-bench:{name}:*")


def gateway(args: argparse.Namespace, work: Path) -> None:
    """Every cell on the same mock, in short turns (see the docstring)."""
    budget = f"bench-{os.urandom(6).hex()}"
    no_redis = redis_error(args.redis_url)
    procs, runs, load, projects, redis_state = Procs(), {}, [os.getloadavg()[0]], {}, None
    try:
        upstream = start_nginx(procs, work)
        print(f"nginx mock on {upstream}; {args.rounds} rounds of {args.duration:g} s cells at c=1 and c=16 after "
              f"{args.warmup:g} s warm-ups; load average {load[0]:.2f} on {os.cpu_count()} CPUs; work dir {work}", flush=True)
        servers = {"nginx": (upstream, None), "aiohttp": start_bare(procs, work, "aiohttp", upstream)}
        projects["memory"] = keel_project(work, upstream, "memory", budget_toml(budget))
        if no_redis:
            print(f"  redis    skipped: {no_redis}")
        else:
            projects["redis"] = keel_project(work, upstream, "redis", budget_toml(budget), top=f'redis_url = "{args.redis_url}"\n')
        for name, project in projects.items():
            servers[name] = start_keel(procs, project)
        cells = [(name, servers[server], tenant_script(work, tenant)) for name, server, tenant in CELLS if server in servers]
        for _, (base, _), script in cells:
            run_wrk(base, 2, 16, args.warmup, script)
        runs = {conns: {name: [] for name, _, _ in cells} for conns in CONCURRENCIES}
        for i in range(args.rounds):
            # Rotated, and reversed every other round, so that each cell follows a cell of its own
            # server (warm) as often as another server's (cold): a fixed cyclic order biased the shares.
            turn = (i // 2) % len(cells)
            order = cells[turn:] + cells[:turn]
            for conns in CONCURRENCIES:
                for name, (base, proc), script in (order[::-1] if i % 2 else order):
                    runs[conns][name].append(cell(base, proc.pid if proc else None, args.duration, script, conns))
            print(f"round {i + 1}/{args.rounds}: " + "  ".join(
                f"{n} {1e3 * runs[1][n][-1]['p50_ms']:.0f} us {runs[16][n][-1]['rps']:,.0f}/s" for n, _, _ in cells), flush=True)
        if "redis" in projects:
            time.sleep(2)  # requests wrk left in flight finish, and the leases, unused for a second, go back
            redis_state = redis_buckets(args.redis_url, budget)
    finally:
        procs.stop_all()
        if not no_redis:
            with contextlib.suppress(Exception):
                redis_buckets(args.redis_url, budget, delete=True)
    load.append(os.getloadavg()[0])
    print("\n" + "\n".join(f"  {name:<14}{label}" for name, label in LABELS.items() if name in runs[16]))
    result = report(runs)
    print("\nbudget path exercised: traces noting a reservation (after a clean stop), of the requests tenant acme sent")
    for name in BUDGETS:
        if name in projects:
            sent = sum(c["requests"] for conns in CONCURRENCIES for c in runs[conns][name + ":on"])
            print(f"  {name:<8} {budget_notes(projects[name] / '.keel' / 'keel.db')} of ~{sent:,} measured"
                  + ("" if name != "redis" else f"; Redis bucket {json.dumps(redis_state)} (deleted)"))
    print(f"load average at start/end: {load[0]:.2f}/{load[1]:.2f} on {os.cpu_count()} CPUs")
    data = {"duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds, "cpus": os.cpu_count(),
            "loadavg": load, "runs": runs, "redis": redis_state, **result}
    save_figures("budget_overhead", data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=2, help="whole seconds per measured cell (default 2, max 30)")
    parser.add_argument("--quick", action="store_true", help="12 rounds of 1 s cells")
    parser.add_argument("--rounds", type=int, default=30, help="rounds of cells (default 30, 6 to 200)")
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
    args.duration = 1 if args.quick else min(max(args.duration, 1), 30)
    args.rounds = 12 if args.quick else min(max(args.rounds, 6), 200)
    args.warmup = 3.0
    ensure_tools()
    OUT.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    gateway(args, Path(tempfile.mkdtemp(prefix="budget-", dir=OUT)))


if __name__ == "__main__":
    run_main(main)
