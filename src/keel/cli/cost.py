"""`keel prices` and `keel cost report`."""

from __future__ import annotations

import csv
import io
import json

import typer
from rich.console import Console
from rich.table import Table

from ..cost.pricing import MILLION, Rate
from ..cost.report import Group, check_keys, cost_report
from ..errors import ConfigError
from ..settings import load_settings
from . import cost_project, cost_quality
from .traces import parse_since

app = typer.Typer(help="Where the money goes.", no_args_is_help=True)
app.command("project")(cost_project.project)
app.command("quality")(cost_quality.quality)


def prices() -> None:
    """The effective price of every configured model and where it comes from."""
    from ..client import AsyncClient

    client = AsyncClient(load_settings(), record=False)
    table = Table("model", "provider/model", "input $/M", "cached input $/M", "output $/M", "source")
    for name in client.known_models():
        target = client.resolve(name)
        rate = client.prices.rate(target.provider.name, target.pricing_id, target.model)
        where = f"{target.provider.name}/{target.model}"
        if isinstance(rate, Rate):
            table.add_row(name, where, _m(rate.input), _m(rate.cached_input), _m(rate.output), rate.source)
        elif rate == "tiered":
            table.add_row(name, where, "tiered", "tiered", "tiered", client.prices.catalog)
        else:
            table.add_row(name, where, "unknown", "unknown", "unknown", "no price: add [models.%s.price] to keel.toml" % name)
    Console().print(table)


@app.command("report")
def report(
    by: list[str] = typer.Option(["model"], "--by", help="model, provider, prompt, status, day, week, month (UTC days, ISO weeks) or tag:NAME (repeatable)."),
    since: str | None = typer.Option(None, "--since", help="Age (30m, 2h, 7d) or ISO date."),
    tag: list[str] = typer.Option([], "--tag", help="Only calls with this tag, as key=value (repeatable)."),
    output: str = typer.Option("table", "--format", help="table, csv, json or html (a page with a chart, to redirect to a file)."),
) -> None:
    """Calls, tokens and cost grouped by any dimension, summed by the database; unknown costs are shown as unknown."""
    if output not in ("table", "csv", "json", "html"):
        raise ConfigError(f"--format must be table, csv, json or html, not {output!r}.")
    wanted, start = dict(_pair(t) for t in tag), parse_since(since)
    check_keys(by)
    from ..store import open_store

    with open_store(load_settings().effective_store_url) as store:
        groups = cost_report(store, by, since=start, tags=wanted)
    if output == "json":
        typer.echo(json.dumps([g.as_dict(by) for g in groups], indent=2))
    elif output == "html":
        from ..cost.report_html import report_page

        typer.echo(report_page(by, groups, f"Keel cost by {', '.join(by)}" + (f" since {since}" if since else "")))
    elif output == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[*by, "calls", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_known", "calls_with_unknown_cost"])
        writer.writeheader()
        writer.writerows(g.as_dict(by) for g in groups)
        typer.echo(buffer.getvalue(), nl=False)
    else:
        _table(by, groups)


def _table(by: list[str], groups: list[Group]) -> None:
    table = Table(*by, "calls", "tokens in/out (cached)", "cost")
    for group in groups:
        tokens = f"{group.prompt_tokens}/{group.completion_tokens} ({group.cached_tokens})"
        table.add_row(*group.key, str(group.calls), tokens, group.cost_text)
    Console().print(table)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--tag {text!r}: write it as key=value.")
    return key, value


def _m(value) -> str:  # type: ignore[no-untyped-def]
    return f"{value * MILLION:.4f}"


def budgets() -> None:
    """Spent, held (by calls in flight, or leased to gateway workers) and remaining for every
    configured budget in its current period."""
    import asyncio

    from ..budgets import budget_status, open_ledger

    settings = load_settings()
    if not settings.budgets:
        typer.echo("No budgets configured. Add [[budgets]] entries to keel.toml.")
        return
    if not settings.redis_url:
        raise ConfigError(
            "Budgets are kept in each process's memory when no redis_url is set, so no other process can "
            "read them. Set redis_url in keel.toml (or KEEL_REDIS_URL) to share and inspect them."
        )

    async def read() -> list[dict]:
        ledger = open_ledger(settings)
        try:
            return await budget_status(settings, ledger)
        finally:
            await ledger.aclose()

    table = Table("budget", "scope", "period", "kind", "limit", "spent", "held", "remaining")
    for row in asyncio.run(read()):
        kind = "hard" if row["hard"] else "soft"
        table.add_row(row["budget"], str(row["scope"]), str(row["period"]), kind, *(f"${row[k]:.4f}" for k in ("limit", "spent", "reserved", "remaining")))
    Console().print(table)
