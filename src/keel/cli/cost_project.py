"""`keel cost project`: monthly cost at other traffic levels and on other models, from traces.

The math lives in keel.cost.projection; this module reads traces, resolves candidates and prints.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from ..cost.pricing import Rate
from ..cost.projection import (
    Candidate,
    Projection,
    TokenStats,
    break_even,
    cost_curves,
    format_volume,
    parse_traffic,
    project_costs,
    render_svg,
    token_stats,
)
from ..errors import ConfigError
from ..settings import load_settings
from .traces import parse_since

if TYPE_CHECKING:
    from ..client import AsyncClient


def project(
    traffic: str | None = typer.Option(None, "--traffic", help="Requests per month, comma-separated: 1k,100k,10M (k/M/B)."),
    users: int | None = typer.Option(None, "--users", help="Monthly users (with --requests-per-user)."),
    requests_per_user: float | None = typer.Option(None, "--requests-per-user", help="Requests per user per month."),
    models: str | None = typer.Option(None, "--models", help="Candidate models, comma-separated (default: every model with a known price)."),
    by: str = typer.Option("prompt", "--by", help="Group calls by prompt (model alias for plain calls) or model."),
    prompt: str | None = typer.Option(None, "--prompt", help="Only this prompt's calls."),
    since: str | None = typer.Option(None, "--since", help="Only calls since: age (30m, 2h, 7d) or ISO date."),
    eval_run: str | None = typer.Option(None, "--eval-run", help="Only the answers of this eval run (id or prefix), grouped by the suite's prompts."),
    price_per_request: float | None = typer.Option(None, "--price-per-request", help="Revenue per request: adds margin per traffic level."),
    csv_file: Path | None = typer.Option(None, "--csv", help="Also write every projection to this CSV file."),
    chart: Path | None = typer.Option(None, "--chart", help="Also write a log-log SVG chart of cost vs volume (first group)."),
) -> None:
    """Project monthly cost per prompt at given traffic levels for candidate models, from measured tokens."""
    volumes = _volumes(traffic, users, requests_per_user)
    revenue = None
    if price_per_request is not None:
        if price_per_request < 0:
            raise ConfigError(f"--price-per-request must be 0 or more, not {price_per_request}.")
        revenue = Decimal(str(price_per_request))
    if by not in ("prompt", "model"):
        raise ConfigError(f"--by must be prompt or model, not {by!r}.")
    after = parse_since(since)
    settings = load_settings()
    from ..client import AsyncClient

    client = AsyncClient(settings, record=False)
    candidates = _candidates(client, models)

    rows = _read_traces(settings.effective_store_url, after, prompt, eval_run)
    if not rows:
        what = f"prompt {prompt!r}" if prompt else "any call"
        window = f" since {since}" if since else ""
        run = f" in eval run {eval_run!r}" if eval_run else ""
        raise ConfigError(f"No trace data for {what}{run}{window}. Run the prompt or an eval first (`keel eval run`), then project.")

    console = Console()
    groups = token_stats(rows, by)
    console.print(_stats_table(groups))
    projections = [p for stats in groups for p in project_costs(stats, candidates, volumes, revenue)]
    console.print(_projection_table(projections, volumes, margin=False))
    if revenue is not None:
        console.print(_projection_table(projections, volumes, margin=True))
    for candidate in candidates:
        if not candidate.self_hosted and candidate.rate is None:
            console.print(f"{candidate.name}: {candidate.note}", markup=False)
    evens = _break_even_table(groups, candidates)
    if evens is not None:
        console.print(evens)
    if csv_file is not None:
        _write_csv(csv_file, projections)
        console.print(f"wrote {csv_file}")
    if chart is not None:
        chart.write_text(_chart(groups[0], candidates, volumes))
        console.print(f"wrote {chart} (group {groups[0].group})")


def _read_traces(url: str, after: float | None, prompt: str | None, eval_run: str | None) -> list[dict[str, Any]]:
    from ..store import open_store

    store = open_store(url)
    try:
        if eval_run is None:
            return store.list_traces(since=after, prompt=prompt, limit=1_000_000)
        rows = _eval_run_traces(store, eval_run)
    finally:
        store.close()
    return [r for r in rows if (after is None or r["started_at"] >= after) and (prompt is None or r["prompt_name"] == prompt)]


def _eval_run_traces(store: Any, run_id: str) -> list[dict[str, Any]]:
    """The traces of a run's answers (not of its judge calls), named after the suite's prompts."""
    run = store.get_eval_run(run_id)
    if run is None:
        raise ConfigError(f"No eval run {run_id!r} (or the prefix is ambiguous); `keel eval list` shows the runs.")
    rows = []
    for result in store.eval_results(run["id"]):
        trace = store.get_trace(result["trace_id"]) if result.get("trace_id") else None
        if trace is not None:
            rows.append({**trace, "prompt_name": trace.get("prompt_name") or result["prompt"]})
    return rows


def _volumes(traffic: str | None, users: int | None, per_user: float | None) -> list[Decimal]:
    levels = parse_traffic(traffic) if traffic else []
    if users is not None or per_user is not None:
        if users is None or per_user is None:
            raise ConfigError("--users and --requests-per-user go together: give both.")
        if users <= 0 or per_user <= 0:
            raise ConfigError(f"--users ({users}) and --requests-per-user ({per_user}) must both be more than 0.")
        levels = sorted({*levels, Decimal(users) * Decimal(str(per_user))})
    if not levels:
        raise ConfigError("Give the traffic to project: --traffic 1k,100k,10M or --users N --requests-per-user R.")
    return levels


def _candidates(client: AsyncClient, models: str | None) -> list[Candidate]:
    names = [m.strip() for m in models.split(",") if m.strip()] if models else client.known_models()
    found = [_candidate(client, name) for name in names]
    if not models:
        found = [c for c in found if c.self_hosted or c.rate is not None]
        if not found:
            raise ConfigError("No configured model has a known price. Add [models.<alias>.price] to keel.toml or pass --models.")
    return found


def _candidate(client: AsyncClient, name: str) -> Candidate:
    target = client.resolve(name)  # UnknownModel (a ConfigError) lists the configured models
    alias = client.settings.models.get(name)
    price = alias.price if alias is not None else None
    if price is not None and price.per_hour is not None:
        return Candidate(name, per_hour=price.per_hour, tokens_per_second=price.tokens_per_second)
    rate = client.prices.rate(target.provider.name, target.pricing_id, target.model)
    if isinstance(rate, Rate):
        return Candidate(name, rate=rate)
    if rate == "tiered":
        return Candidate(name, note="unknown price (tiered in the catalog: not projected)")
    return Candidate(name, note=f"unknown price: add [models.{name}.price] to keel.toml")


def _stats_table(groups: list[TokenStats]) -> Table:
    table = Table("group", "calls", "prompt tokens mean/p50/p95", "completion", "cached", "cache hits", "routing", title="Measured")
    for s in groups:
        routing = ", ".join(f"{k} {_pct(v)}" for k, v in s.routing.items()) or "(all cache hits)"
        dists = [f"{d.mean:.1f}/{d.p50}/{d.p95}" for d in (s.prompt, s.completion, s.cached)]
        table.add_row(s.group, str(s.calls), *dists, _pct(s.cache_hit_rate), routing)
    return table


def _projection_table(rows: list[Projection], volumes: list[Decimal], margin: bool) -> Table:
    """Monthly cost per traffic level, or with `margin` the margin (revenue − cost) per level."""
    title = "Margin per month (revenue − cost)" if margin else "Projected monthly cost"
    table = Table("group", "model", "$/request", *(f"@{format_volume(v)}/mo" for v in volumes), title=title)
    by_pair: dict[tuple[str, str], list[Projection]] = {}
    for row in rows:
        by_pair.setdefault((row.group, row.model), []).append(row)
    for (group, model), cells in by_pair.items():
        if cells[0].monthly is None:
            table.add_row(group, model, *["unknown price"] * (len(volumes) + 1))
            continue
        per_request = "self-hosted" if cells[0].instances is not None else _money(cells[0].per_request)
        if margin:
            values = [_money(c.margin) for c in cells]
        else:
            values = [_money(c.monthly) + (f" ({c.instances}×)" if c.instances and c.instances > 1 else "") for c in cells]
        table.add_row(group, model, per_request, *values)
    return table


def _break_even_table(groups: list[TokenStats], candidates: list[Candidate]) -> Table | None:
    hosted = [c for c in candidates if c.self_hosted]
    apis = [c for c in candidates if c.rate is not None and not c.self_hosted]
    if not hosted or not apis:
        return None
    table = Table("group", "self-hosted", "vs API model", "break-even requests/month", title="Break-even (one instance)")
    for stats in groups:
        for h in hosted:
            for a in apis:
                volume = break_even(stats, h, a)
                text = _volume(volume) if volume is not None else "never (API cheaper at every volume)"
                table.add_row(stats.group, h.name, a.name, text)
    return table


def _write_csv(path: Path, rows: list[Projection]) -> None:
    fields = ["group", "model", "requests_per_month", "cost_per_request", "monthly_cost", "instances", "revenue", "margin", "note"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for r in rows:
            values = [r.group, r.model, r.volume, r.per_request, r.monthly, r.instances, r.revenue, r.margin, r.note]
            writer.writerow(["" if v is None else str(v) for v in values])


def _chart(stats: TokenStats, candidates: list[Candidate], volumes: list[Decimal]) -> str:
    marks: list[tuple[str, float, float]] = []
    for h in (c for c in candidates if c.self_hosted):
        for a in (c for c in candidates if c.rate is not None and not c.self_hosted):
            volume = break_even(stats, h, a)
            if volume is not None and h.per_hour is not None:
                marks.append((f"{h.name} = {a.name} at {_volume(volume)}/month", float(volume), float(h.per_hour * 730)))
    span = [*volumes, *(Decimal(repr(m[1])) for m in marks)]
    curves = cost_curves(stats, candidates, min(span), max(span))
    return render_svg(curves, marks, title=f"Monthly cost of {stats.group!r} by traffic")


def _volume(value: Decimal) -> str:
    """Three significant figures: 167,744,680.85 → 168M."""
    return format_volume(Decimal(f"{value:.3g}"))


def _money(value: Decimal | None) -> str:
    if value is None:
        return "unknown price"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}" if abs(value) >= 1 else f"{sign}${abs(value):.6f}"


def _pct(value: Decimal) -> str:
    return f"{value * 100:.0f}%"
