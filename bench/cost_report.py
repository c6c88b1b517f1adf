"""`keel cost report` over a million traces, against the same question asked of SQLite directly.

    .venv/bin/python bench/cost_report.py [--traces N] [--rounds R]

Builds a SQLite store of N traces (default 1,000,000) in a temporary directory: 90 days of calls
in time order, eight models (catalog prices; a self-hosted model priced per hour, whose costs
carry 28 significant digits; an embedding model whose tiny costs are written 1.5E-7; a free local
model; an unpriced one), twelve prompts, tenant and feature tags, 3% failed calls.

For each grouping, the median of R rounds (run interleaved, so load from other processes hits
all alike), as a ratio to the baseline measured in the same run:

  baseline     sqlite3 on the file runs the aggregate a person would type, e.g.
               SELECT model, count(*), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens),
                      sum(cost), count(*) - count(cost) FROM traces GROUP BY model
               (its cost is a float sum; SQLite picks the plan: for model it walks the model index)
  full scan    the same with NOT INDEXED: the fastest plain aggregate, the strictest baseline
  Keel's SQL   the statements `keel cost report` sends (exact cost sums; one per part of the
               table, see below), run by sqlite3 directly one after another: the work it asks for
  report()     the CLI's function in this process: open the store, sum, print the JSON
  keel CLI     `keel cost report --by … --format json` as a subprocess (interpreter start, imports,
               migration check included), against the sqlite3 command-line shell running the baseline

Keel splits a table of more than 100,000 rows per part into rowid ranges, one per CPU (up to 4),
and sums the parts at once on their own connections; the baseline runs on one core. So each
figure comes with the CPU time it took (this process's threads and its children), as a ratio to
the baseline's too: the wall time is what the issue judges, the CPU time shows the work.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event

from keel.cli.cost import report
from keel.store import open_store

MILLION = Decimal(1_000_000)
PER_HOUR = Decimal("2.5") / (700 * 3600) * MILLION  # $2.50 an hour at 700 tokens/s: a 28-digit rate
MODELS = [  # alias, provider, $/M input, output, cached input (None: no price known), share of calls
    ("mini", "openai", Decimal("0.15"), Decimal("0.6"), Decimal("0.075"), 30),
    ("smart", "openai", Decimal("2.5"), Decimal("10"), Decimal("1.25"), 12),
    ("sonnet", "anthropic", Decimal("3"), Decimal("15"), Decimal("0.3"), 14),
    ("haiku", "anthropic", Decimal("0.8"), Decimal("4"), Decimal("0.08"), 15),
    ("embed", "openai", Decimal("0.02"), Decimal("0"), Decimal("0.02"), 12),
    ("gpu", "selfhosted", PER_HOUR, PER_HOUR, PER_HOUR, 5),
    ("mystery", "selfhosted", None, None, None, 6),
    ("local", "local", Decimal(0), Decimal(0), Decimal(0), 6),
]
FEATURES = ["search", "chat", "summarize", "extract", "classify", "translate"]
DAYS = 90

#: The plain aggregate, by grouping: what the baseline groups by, and the `keel --by` value.
GROUPINGS = {
    "model": "model",
    "tag:feature": "json_extract(tags, '$.feature')",
    "month": "strftime('%Y-%m', started_at, 'unixepoch')",
}
PLAIN = ("SELECT {key} AS k, count(*), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), "
         "sum(cost), count(*) - count(cost) FROM traces{hint} GROUP BY k")


def build(path: Path, count: int) -> None:
    """Keel's schema (open_store migrates), then a bulk load: rows in big transactions with the
    indexes dropped and rebuilt after, as a restore would."""
    open_store(f"sqlite:///{path}").close()
    rnd = random.Random(7)
    weights = [m[-1] for m in MODELS]
    rates = [(alias, provider, *(None if p is None else p / MILLION for p in prices), share)
             for alias, provider, *prices, share in MODELS]
    prompts = [(f"prompt-{i}", "%064x" % rnd.getrandbits(256)) for i in range(12)]
    request = json.dumps({"messages": [{"role": "user", "content": "Summarise the paragraph below in one line. " * 3}],
                          "params": {"temperature": 0.2}})
    response = json.dumps({"message": {"role": "assistant", "content": "A one-line summary of the paragraph."},
                           "finish_reason": "stop"})
    insert = ("INSERT INTO traces (id, kind, source, started_at, ended_at, latency_ms, provider, model, request, response, "
              "prompt_tokens, completion_tokens, cached_tokens, cost, currency, status, stream, tags, prompt_name, "
              "prompt_version) VALUES (?, 'chat', 'sdk', ?, ?, 900.0, ?, ?, ?, ?, ?, ?, ?, ?, 'USD', ?, 0, ?, ?, ?)")
    connection = sqlite3.connect(path, isolation_level=None)
    indexes = connection.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'traces' "
                                 "AND sql IS NOT NULL").fetchall()
    for name, _ in indexes:
        connection.execute(f"DROP INDEX {name}")
    start, step = time.time() - DAYS * 86400, DAYS * 86400 / count
    for first in range(0, count, 100_000):
        rows = []
        for i in range(first, min(count, first + 100_000)):
            alias, provider, per_in, per_out, per_cached, _ = rnd.choices(rates, weights)[0]
            prompt_tokens = rnd.randint(3, 40) if alias == "embed" else rnd.randint(20, 4000)
            completion = 0 if alias == "embed" else rnd.randint(1, 800)
            cached = rnd.choice((0, 0, 0, prompt_tokens // 2))
            status = "error" if rnd.random() < 0.03 else "ok"
            cost = None
            if per_in is not None and status == "ok":
                cost = str((prompt_tokens - cached) * per_in + cached * per_cached + completion * per_out)
            tags = {"tenant": f"t{rnd.randint(1, 40)}"} | ({"feature": rnd.choice(FEATURES)} if rnd.random() < 0.9 else {})
            prompt, version = rnd.choice(prompts) if rnd.random() < 0.7 else (None, None)
            at = start + i * step
            rows.append(("%032x" % rnd.getrandbits(128), at, at + 0.9, provider, alias, request, response,
                         prompt_tokens, completion, cached, cost, status, json.dumps(tags), prompt, version))
        connection.execute("BEGIN")
        connection.executemany(insert, rows)
        connection.execute("COMMIT")
    for _, sql in indexes:
        connection.execute(sql)
    connection.close()


def keel_statements(url: str, by: str) -> list[tuple[str, Any]]:
    """The SQL statements and parameters `keel cost report --by BY` sends, caught on their way
    out: one per part of the table it sums at once."""
    sent: list[tuple[str, Any]] = []
    with open_store(url) as store:
        event.listen(store.engine, "before_cursor_execute", lambda _c, _cur, sql, params, *_: sent.append((sql, params)))
        store.cost_totals([by])
    return [s for s in sent if "GROUP BY" in s[0]]


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process's threads and its finished children)."""
    start, cpu = time.perf_counter(), _cpu()
    run()
    return time.perf_counter() - start, _cpu() - cpu


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def in_process_report(by: str) -> Callable[[], object]:
    def run() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            report(by=[by], since=None, tag=[], output="json")
    return run


def command(args: list[str], work: Path, env: dict[str, str]) -> Callable[[], object]:
    return lambda: subprocess.run(args, cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)


def check(path: Path, by: str, work: Path, env: dict[str, str]) -> str:
    """The CLI's figures against the plain aggregate's: the same calls and tokens; the exact cost
    against the float sum."""
    out = subprocess.run([sys.executable, "-m", "keel", "cost", "report", "--by", by, "--format", "json"],
                         cwd=work, env=env, check=True, capture_output=True, text=True).stdout
    keel = {row[by] if row[by] != "(none)" else None: row for row in json.loads(out)}
    with sqlite3.connect(path) as connection:
        plain = connection.execute(PLAIN.format(key=GROUPINGS[by], hint="")).fetchall()
    for key, calls, prompt, completion, cached, cost, unknown in plain:
        row = keel[key]
        assert (row["calls"], row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"],
                row["calls_with_unknown_cost"]) == (calls, prompt, completion, cached, unknown), (by, key)
        assert (row["cost_known"] is None) == (cost is None) and abs(float(row["cost_known"] or 0) - (cost or 0)) <= 1e-9 * (cost or 1)
    return f"{len(keel)} groups, the same calls, tokens and unknown costs as the plain aggregate, costs within 1e-9"


def measure(runs: dict[str, Callable[[], object]], rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """The median wall and CPU seconds of each run, the runs interleaved round after round."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(timed(run))
    return ({name: statistics.median(wall for wall, _ in values) for name, values in times.items()},
            {name: statistics.median(cpu for _, cpu in values) for name, values in times.items()})


def show(by: str, agreed: str, timings: tuple[dict[str, float], dict[str, float]], start_up: float, parts: int) -> None:
    m, cpu = timings
    print(f"\n--by {by}: {agreed}; Keel sums it in {parts} part{'s' * (parts > 1)} at once")
    print(f"  {'':48} {'median':>8} {'× baseline':>11} {'× full scan':>12} {'CPU':>8} {'CPU × baseline':>15}")
    for name, label in (("baseline", "baseline    sqlite3: the plain aggregate"),
                        ("scan", "full scan   sqlite3: the same, NOT INDEXED"),
                        ("keel sql", "Keel's SQL  sqlite3: Keel's statements, in turn"),
                        ("report", "report()    the CLI's function, in this process")):
        print(f"  {label:48} {m[name]:6.2f} s {m[name] / m['baseline']:11.2f} {m[name] / m['scan']:12.2f}"
              f" {cpu[name]:6.2f} s {cpu[name] / cpu['baseline']:15.2f}")
    against, what = ("shell", "the sqlite3 shell") if "shell" in m else ("baseline", "the baseline (no sqlite3 shell installed)")
    if "shell" in m:
        print(f"  {'sqlite3     its shell, the plain aggregate':48} {m['shell']:6.2f} s {'':24} {cpu['shell']:6.2f} s")
    print(f"  {'keel        keel cost report, a subprocess':48} {m['keel cli']:6.2f} s {m['keel cli'] / m[against]:11.2f} × {what}"
          f" (its start-up alone: {start_up:.2f} s); CPU {cpu['keel cli']:.2f} s, {cpu['keel cli'] / cpu[against]:.2f} ×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    shell = shutil.which("sqlite3")
    keel_cli = str(Path(sys.executable).with_name("keel"))
    home = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "keel.db"
        began = time.perf_counter()
        build(path, args.traces)
        url = f"sqlite:///{path}"
        env = {**os.environ, "KEEL_STORE_URL": url}
        os.environ["KEEL_STORE_URL"] = url
        os.chdir(work)  # no keel.toml here: the report reads KEEL_STORE_URL
        print(f"store: {args.traces:,} traces over {DAYS} days, {path.stat().st_size / 1e6:,.0f} MB, built in "
              f"{time.perf_counter() - began:.0f} s; SQLite {sqlite3.sqlite_version}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; median of {args.rounds} rounds")
        empty = {**env, "KEEL_STORE_URL": f"sqlite:///{work / 'empty.db'}"}
        start_up = measure({"keel": command([keel_cli, "cost", "report", "--format", "json"], work, empty)}, args.rounds)[0]["keel"]
        connection = sqlite3.connect(path)
        try:
            for by, key in GROUPINGS.items():
                plain, scan = PLAIN.format(key=key, hint=""), PLAIN.format(key=key, hint=" NOT INDEXED")
                statements = keel_statements(url, by)
                runs: dict[str, Callable[[], object]] = {
                    "baseline": lambda q=plain: connection.execute(q).fetchall(),
                    "scan": lambda q=scan: connection.execute(q).fetchall(),
                    "keel sql": lambda s=statements: [connection.execute(q, p).fetchall() for q, p in s],
                    "report": in_process_report(by),
                    "keel cli": command([keel_cli, "cost", "report", "--by", by, "--format", "json"], work, env),
                }
                if shell:
                    runs["shell"] = command([shell, str(path), plain], work, env)
                runs["baseline"]()  # warm the page cache
                show(by, check(path, by, work, env), measure(runs, args.rounds), start_up, len(statements))
        finally:
            connection.close()
            os.chdir(home)

if __name__ == "__main__":
    main()
