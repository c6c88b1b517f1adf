"""`keel eval`: run eval suites, list and show runs, compare two runs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import ConfigError
from ..evals.pareto import cost_per_thousand, pareto_front

app = typer.Typer(help="Evaluate prompts × models against datasets with assertions.", no_args_is_help=True)
console = Console()


@app.command("run")
def run(
    suite: Path = typer.Argument(..., help="The suite file, e.g. evals/example.eval.yaml."),
    junit: Path | None = typer.Option(None, "--junit", help="Write a JUnit XML report here."),
    html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report here."),
    resume: str | None = typer.Option(None, "--resume", help="Resume this run id (default: the last unfinished run of the same suite content)."),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1, help="Calls in flight per provider (default: the suite's, else 4)."),
    fresh: bool = typer.Option(False, "--fresh", help="Start a new run even if an unfinished one could be resumed."),
    baseline: bool = typer.Option(False, "--baseline", help="Fail on a significant regression against keel.lock's baselines."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ask the models again instead of reusing the answers of an earlier run of the same calls."),
) -> None:
    """Run a suite; exit 1 when its thresholds fail (or, with --baseline, on a regression).

    Answers come from the response cache when an earlier run made the same call (same request,
    same repeat number). A re-run of an unchanged suite (same prompts, models and checks) carries
    over the last run's answers: nothing is asked or scored again. --no-cache asks every model again."""
    run_id, passed = asyncio.run(_run(suite, resume, concurrency, not fresh, not no_cache))
    store, run_row, results = _load(run_id)
    try:
        _print_run(run_row)
        if baseline:
            passed = _gate(store, run_row) and passed
    finally:
        store.close()
    if junit is not None:
        from ..evals.junit import write_junit

        write_junit(junit, run_row, results)
        console.print(f"wrote {junit}", highlight=False)
    if html is not None:
        from ..evals.html import write_html

        write_html(html, run_row, results)
        console.print(f"wrote {html}", highlight=False)
    if not passed:
        raise typer.Exit(1)


@app.command("list")
def list_runs(suite: str | None = typer.Option(None, "--suite", help="Only this suite's runs."),
              limit: int = typer.Option(20, "--limit", min=1)) -> None:
    """The latest eval runs."""
    store = _store()
    try:
        runs = store.list_eval_runs(suite, limit)
    finally:
        store.close()
    table = Table("run", "suite", "status", "pass rate", "verdict", "started")
    for r in runs:
        cells = (r.get("summary") or {}).get("cells", [])
        items = sum(c["items"] for c in cells)
        rate = f"{sum(c['passed'] for c in cells) / items:.1%}" if items else "-"
        verdict = "-" if r["summary"] is None else ("[green]pass[/]" if r["summary"]["passed"] else "[red]fail[/]")
        table.add_row(r["id"][:12], r["suite"], r["status"], rate, verdict, _time(r["started_at"]))
    console.print(table)


@app.command("show")
def show(run_id: str = typer.Argument(..., help="A run id or unique prefix."),
         failures: bool = typer.Option(True, "--failures/--no-failures", help="List failed answers.")) -> None:
    """A run's figures per cell, and its failed answers."""
    store, run_row, results = _load(run_id)
    store.close()
    _print_run(run_row)
    if failures:
        for row in results:
            if not row["passed"]:
                messages = "; ".join(a["message"] for a in row["assertions"] or [] if not a["passed"]) or row.get("error") or ""
                console.print(f"[red]✗[/] {row['case_id']} [{row['prompt']} × {row['model']} #{row['repeat']}] "
                              f"{messages}\n    output: {str(row['output'])[:200]!r}", highlight=False)


@app.command("compare")
def compare(run_a: str = typer.Argument(..., help="The earlier run (id or prefix)."),
            run_b: str = typer.Argument(..., help="The later run (id or prefix).")) -> None:
    """Per-answer differences between two runs, with McNemar's test and a bootstrap interval."""
    from ..evals.compare import compare_runs

    store, a, results_a = _load(run_a)
    _, b, results_b = _load(run_b, store)
    store.close()
    report = compare_runs(results_a, results_b)
    console.print(f"{a['id'][:12]} → {b['id'][:12]}: {report['paired']} paired answers "
                  f"({report['only_a']} only in A, {report['only_b']} only in B)", highlight=False)
    low, high = report["delta_ci95"]
    console.print(f"pass rate {report['pass_rate_a']:.1%} → {report['pass_rate_b']:.1%} "
                  f"(Δ {report['delta']:+.1%}, 95% CI {low:+.1%}…{high:+.1%}); fixed {report['fixed']}, broken "
                  f"{report['broken']}; McNemar exact p = {report['mcnemar_p']:.4f}", highlight=False)
    console.print(f"cost {_money(report['cost_a'])} → {_money(report['cost_b'])}; mean latency "
                  f"{_ms(report['latency_mean_a'])} → {_ms(report['latency_mean_b'])}", highlight=False)
    for change in report["changes"]:
        mark = "[green]fixed[/]" if change["b_passed"] else "[red]broken[/]"
        console.print(f"  {mark} {' / '.join(str(k) for k in change['key'])}: {str(change['a_output'])[:80]!r} → "
                      f"{str(change['b_output'])[:80]!r}", highlight=False)


async def _run(path: Path, resume: str | None, concurrency: int | None, auto: bool, cache: bool = True) -> tuple[str, bool]:
    from ..client import AsyncClient
    from ..evals.runner import EvalRunner
    from ..evals.suite import load_suite
    from ..settings import load_settings
    from ..store import open_store

    suite = load_suite(path)
    client = AsyncClient(load_settings(), source="eval")
    store = open_store(client.settings.effective_store_url)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), disable=not sys.stderr.isatty(), transient=True)
    task = progress.add_task(f"eval {suite.name}", total=None)
    runner = EvalRunner(client, store, suite, concurrency=concurrency, cache=cache,
                        on_start=lambda total, done: progress.update(task, total=total, completed=done),
                        on_result=lambda row: progress.advance(task))
    try:
        with progress:
            result = await runner.run(resume, auto_resume=auto)
        if result.resumed:
            console.print(f"resumed run {result.run_id[:12]}: {result.skipped} answers kept, {result.ran} run now", highlight=False)
        if result.reused_from is not None:
            console.print(f"{result.cached} of {result.ran} answers carried over from run {result.reused_from[:12]} (same suite, "
                          "prompts, models and checks: nothing asked or scored again; --no-cache asks again)", highlight=False)
        elif result.cached:
            console.print(f"{result.cached} of {result.ran} answers came from the response cache (no model was asked; "
                          "tokens, cost and latency are those of the original calls; --no-cache asks again)", highlight=False)
        return result.run_id, result.passed
    finally:
        await client.aclose()
        store.close()


def _store() -> Any:
    from ..settings import load_settings
    from ..store import open_store

    return open_store(load_settings().effective_store_url)


def _gate(store: Any, run_row: dict[str, Any]) -> bool:
    from ..evals.baseline import gate
    from ..prompts.lockfile import Lockfile
    from ..settings import load_settings

    ok = True
    for verdict in gate(store, Lockfile.read(load_settings().lock_path), run_row):
        c = verdict.comparison
        line = (f"{verdict.prompt}: pass rate {c['pass_rate_a']:.1%} → {c['pass_rate_b']:.1%} against baseline "
                f"{verdict.baseline_run[:12]} ({c['broken']} broken, {c['fixed']} fixed, McNemar p = {c['mcnemar_p']:.3g})")
        if verdict.regressed:
            ok = False
            console.print(f"[red]regression[/] {line}", highlight=False)
            for change in c["changes"]:
                if change["a_passed"] and not change["b_passed"]:
                    console.print(f"  broken: {change['key']}: {str(change['b_output'])[:120]!r}", highlight=False, markup=False)
        else:
            console.print(f"[green]no significant regression[/] {line}", highlight=False)
    return ok


def _load(run_id: str, store: Any = None) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    store = store or _store()
    run_row = store.get_eval_run(run_id)
    if run_row is None:
        store.close()
        raise ConfigError(f"No eval run {run_id!r} (or the prefix is ambiguous); `keel eval list` shows the runs.")
    return store, run_row, store.eval_results(run_row["id"])


def _print_run(run: dict[str, Any]) -> None:
    summary = run.get("summary") or {"cells": [], "passed": False, "failures": []}
    table = Table("prompt × model", "pass rate", "95% CI", "cases", "consistency", "pass@k / pass^k", "tokens", "cost", "$/1k req",
                  "p50 ms", title=f"{run['suite']} · run {run['id'][:12]} · {run['status']}  (★ Pareto front: quality vs cost)")
    front = pareto_front(summary["cells"])
    for c in summary["cells"]:
        colour = "green" if c["ok"] else "red"
        cost = c["cost"] if c["cost"] is not None else f"unknown ({c['cost_unknown']})"
        table.add_row(f"{c['prompt']} × {c['model']}", f"[{colour}]{c['pass_rate']:.1%}[/]",
                      f"{c['ci95'][0]:.2f}–{c['ci95'][1]:.2f}", f"{c['cases_passed']}/{c['cases']}", f"{c['consistency']:.2f}",
                      f"{c['pass_at_k']:.2f} / {c['pass_hat_k']:.2f} (k={c['k']})",
                      f"{c['prompt_tokens']}+{c['completion_tokens']}", cost,
                      _per_thousand(c) + (" ★" if (c["prompt"], c["model"]) in front else ""), _ms(c["latency_p50_ms"]))
    console.print(table)
    for failure in summary["failures"]:
        console.print(f"[red]threshold:[/] {failure}", highlight=False)
    console.print("[green]PASSED[/]" if summary["passed"] else "[red]FAILED[/]")


def _time(epoch: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def _money(value: str | None) -> str:
    return f"${value}" if value is not None else "unknown"


def _per_thousand(cell: dict[str, Any]) -> str:
    value = cost_per_thousand(cell)
    return "unknown" if value is None else f"${value:.4f}"


def _ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "-"


@app.command("import")
def import_promptfoo(
    config: Path = typer.Argument(..., help="A promptfooconfig.yaml."),
    output: Path = typer.Option(Path("evals/imported.eval.yaml"), "-o", "--output", help="Where to write the Keel suite."),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file."),
) -> None:
    """Convert a promptfoo config into a Keel suite; lists everything that could not be carried over."""
    from ..client import AsyncClient
    from ..evals.promptfoo import convert, read_config, to_yaml
    from ..files import atomic_write
    from ..settings import load_settings

    if output.exists() and not force:
        raise ConfigError(f"{output} already exists. Use --force to overwrite it.")
    client = AsyncClient(load_settings(), record=False)

    def model_for(model_id: str) -> str | None:
        if model_id in client.settings.models:
            return model_id
        return next((n for n in client.known_models() if client.settings.models[n].model == model_id), None)

    suite, skipped = convert(read_config(config), config.parent, model_for)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, to_yaml(suite).encode("utf-8"))
    console.print(f"wrote {output}: {len(suite['prompts'])} prompts × {len(suite['models'])} models, {len(suite['dataset']['cases'])} cases", highlight=False)
    for item in skipped:
        console.print(f"[yellow]not imported:[/] {item}", highlight=False)


@app.command("migrate")
def migrate(
    suite: Path = typer.Argument(..., help="The suite file."),
    from_model: str = typer.Option(..., "--from", help="The model pinned today."),
    to_model: str = typer.Option(..., "--to", help="The candidate model."),
) -> None:
    """Run a suite on two models and report, case by case, what moving the pin would change."""
    runs = asyncio.run(_migrate(suite, from_model, to_model))
    store = _store()
    try:
        regressed = _migration_report(store, *runs)
    finally:
        store.close()
    if regressed:
        raise typer.Exit(1)


async def _migrate(path: Path, from_model: str, to_model: str) -> tuple[str, str]:
    import dataclasses

    from ..client import AsyncClient
    from ..evals.runner import EvalRunner
    from ..evals.suite import load_suite
    from ..settings import load_settings
    from ..store import open_store

    suite = load_suite(path)
    client = AsyncClient(load_settings(), source="eval")
    store = open_store(client.settings.effective_store_url)
    try:
        run_ids = []
        for model in (from_model, to_model):
            client.resolve(model)  # an unknown model fails before any call
            one = dataclasses.replace(suite, config=suite.config.model_copy(update={"models": [model]}))
            run_ids.append((await EvalRunner(client, store, one).run(None, auto_resume=True)).run_id)
        return run_ids[0], run_ids[1]
    finally:
        store.close()
        await client.aclose()


def _migration_report(store: Any, run_a: str, run_b: str) -> bool:
    from ..evals.compare import compare_runs

    a, b = store.get_eval_run(run_a), store.get_eval_run(run_b)
    rows_a, rows_b = store.eval_results(run_a), store.eval_results(run_b)
    cells_a = {c["prompt"]: c for c in (a.get("summary") or {}).get("cells", [])}
    cells_b = {c["prompt"]: c for c in (b.get("summary") or {}).get("cells", [])}
    table = Table("prompt", "pass rate", "McNemar p", "consistency", "tokens in+out", "cost", "p50 ms",
                  title=f"{a['config']['models'][0]} → {b['config']['models'][0]}")
    regressed = False
    for prompt in sorted(cells_a):
        c = compare_runs([r for r in rows_a if r["prompt"] == prompt], [r for r in rows_b if r["prompt"] == prompt])
        x, y = cells_a[prompt], cells_b.get(prompt, {})
        regressed |= c["delta"] < 0 and c["mcnemar_p"] < 0.05
        table.add_row(prompt, f"{c['pass_rate_a']:.1%} → {c['pass_rate_b']:.1%}", f"{c['mcnemar_p']:.3g}",
                      f"{x['consistency']:.2f} → {y.get('consistency', 0):.2f}",
                      f"{x['prompt_tokens']}+{x['completion_tokens']} → {y.get('prompt_tokens')}+{y.get('completion_tokens')}",
                      f"{x['cost'] or 'unknown'} → {y.get('cost') or 'unknown'}", f"{_ms(x['latency_p50_ms'])} → {_ms(y.get('latency_p50_ms'))}")
        for change in c["changes"]:
            state = "fixed" if change["b_passed"] else "broken"
            console.print(f"  {prompt} {state}: case {change['key'][0]} repeat {change['key'][1]}: "
                          f"{str(change['a_output'])[:60]!r} → {str(change['b_output'])[:60]!r}", highlight=False, markup=False)
    console.print(table)
    return regressed
