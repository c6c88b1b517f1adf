"""`keel cost quality`: which prompt × model pair is worth its price, from eval runs."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from ..cost.projection import format_volume, parse_traffic
from ..errors import ConfigError
from ..settings import load_settings

if TYPE_CHECKING:
    from ..cost.quality import QualityRow


def quality(
    runs: list[str] = typer.Argument(None, help="Eval run ids or prefixes (default: the newest finished run of each suite)."),
    suite: str | None = typer.Option(None, "--suite", help="Only this suite's runs."),
    traffic: str | None = typer.Option(None, "--traffic", help="Also show the monthly cost at this many requests (e.g. 100k)."),
    output: str = typer.Option("table", "--format", help="table, csv or json."),
) -> None:
    """Pass rate, consistency and cost per 1,000 requests per prompt × model; ★ marks the Pareto front."""
    if output not in ("table", "csv", "json"):
        raise ConfigError(f"--format must be table, csv or json, not {output!r}.")
    volume = _single_volume(traffic) if traffic else None
    from ..cost.quality import quality_rows

    rows = quality_rows(_read_runs(runs or [], suite))
    if output == "json":
        typer.echo(json.dumps([r.as_dict(volume) for r in rows], indent=2))
    elif output == "csv":
        typer.echo(_csv([r.as_dict(volume) for r in rows]), nl=False)
    else:
        _print(rows, volume)


def _read_runs(ids: list[str], suite: str | None) -> list[dict[str, Any]]:
    from ..store import open_store

    store = open_store(load_settings().effective_store_url)
    try:
        if ids:
            found = [_run(store, run_id) for run_id in ids]
        else:
            found = _newest_per_suite(store.list_eval_runs(suite, limit=1000))
    finally:
        store.close()
    if suite is not None:
        found = [r for r in found if r["suite"] == suite]
    if not found:
        where = f" of suite {suite!r}" if suite else ""
        raise ConfigError(f"No finished eval run{where} to compare. Run a suite first: keel eval run evals/NAME.eval.yaml")
    return found


def _run(store: Any, run_id: str) -> dict[str, Any]:
    run = store.get_eval_run(run_id)
    if run is None:
        raise ConfigError(f"No eval run {run_id!r} (or the prefix is ambiguous); `keel eval list` shows the runs.")
    if run["status"] != "finished":
        raise ConfigError(f"Eval run {run['id'][:12]} is {run['status']}, not finished: resume it with keel eval run.")
    return run


def _newest_per_suite(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    newest: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run["status"] == "finished" and run["suite"] not in newest:
            newest[run["suite"]] = run  # list_eval_runs gives the newest first
    return list(newest.values())


def _single_volume(text: str) -> Decimal:
    levels = parse_traffic(text)
    if len(levels) != 1:
        raise ConfigError(f"--traffic takes one level here, e.g. 100k, not {text!r}. For several, use keel cost project.")
    return levels[0]


def _print(rows: list[QualityRow], volume: Decimal | None) -> None:
    extra = [f"$/month @{format_volume(volume)}"] if volume is not None else []
    table = Table("suite", "prompt × model", "pass rate", "consistency", "thresholds", "$/1k requests", *extra,
                  title="Quality vs cost (★ Pareto front, ✓ cheapest pair that passes)")
    for r in rows:
        cost = "unknown" if r.per_thousand is None else f"${r.per_thousand:.4f}"
        marks = (" ★" if r.on_front else "") + (" ✓" if r.cheapest_passing else "")
        verdict = "[green]pass[/]" if r.passes else "[red]fail[/]"
        monthly = [] if volume is None else [_money(r.monthly(volume))]
        table.add_row(r.suite, f"{r.prompt} × {r.model}{marks}", f"{r.pass_rate:.1%}", f"{r.consistency:.2f}", verdict, cost, *monthly)
    console = Console()
    console.print(table)
    for suite in sorted({r.suite for r in rows}):
        best = next((r for r in rows if r.suite == suite and r.cheapest_passing), None)
        text = f"{best.prompt} × {best.model}" if best else "none (no priced pair meets the suite's thresholds)"
        console.print(f"{suite}: cheapest pair that passes: {text}", highlight=False, markup=False)


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _money(value: Decimal | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"
