"""`keel traces list|show`: read the trace store."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError
from ..settings import load_settings

app = typer.Typer(help="Inspect recorded calls.", no_args_is_help=True)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@app.command("list")
def list_traces(
    model: str | None = typer.Option(None, "--model", "-m", help="Only this model name."),
    status: str | None = typer.Option(None, "--status", help="ok or error."),
    since: str | None = typer.Option(None, "--since", help="Age (30m, 2h, 7d) or ISO date/time (UTC unless it names a zone)."),
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="Only calls of this prompt."),
    drift: bool = typer.Option(False, "--drift", help="Only calls answered by a model other than the locked one."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10000),
    json_output: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """The most recent calls, newest first."""
    if status not in (None, "ok", "error"):
        raise ConfigError(f"--status must be 'ok' or 'error', not {status!r}.")
    filters = {"prompt": prompt, "drift": True if drift else None}
    rows = _store().list_traces(model=model, status=status, since=parse_since(since), limit=limit, **filters)
    if json_output:
        for row in rows:
            typer.echo(json.dumps(row, default=str))
        return
    table = Table("id", "when", "model", "prompt", "provider", "status", "tokens in/out", "cost", "latency")
    for row in rows:
        table.add_row(
            row["id"][:12],
            datetime.fromtimestamp(row["started_at"]).strftime("%Y-%m-%d %H:%M:%S"),
            row["model"],
            _prompt(row),
            row["provider"],
            row["status"] if row["status"] == "ok" else f"[red]{row['error_class']}[/]",
            f"{_num(row['prompt_tokens'])}/{_num(row['completion_tokens'])}",
            format_cost(row["cost"]),
            f"{row['latency_ms']:.0f} ms",
        )
    Console().print(table)


@app.command("show")
def show(
    trace_id: str = typer.Argument(..., help="A trace id or a unique prefix of one."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Everything recorded about one call."""
    row = _store().get_trace(trace_id)
    if row is None:
        raise ConfigError(f"No trace with id {trace_id!r}. `keel traces list` shows recent ids.")
    if json_output:
        typer.echo(json.dumps(row, default=str, indent=2))
        return
    console = Console()
    for key, value in row.items():
        if key in ("request", "response", "tags"):
            continue
        shown = format_cost(value) if key == "cost" else value
        console.print(f"[bold]{key}[/]: {shown}", highlight=False)
    for key in ("request", "response", "tags"):
        console.print(f"[bold]{key}[/]:")
        console.print_json(json.dumps(row.get(key), default=str))


def parse_since(text: str | None) -> float | None:
    if not text:
        return None
    match = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if match:
        return time.time() - int(match.group(1)) * UNITS[match.group(2)]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r} is neither an age like 30m, 2h, 7d nor an ISO date like 2026-11-25.") from None
    # A date or time without a zone is UTC, like the days, weeks and months of reports and budgets.
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def format_cost(value: Any) -> str:
    return "unknown" if value is None else f"${float(value):.6f}"


def _prompt(row: dict[str, Any]) -> str:
    if not row.get("prompt_name"):
        return ""
    label = f"@{row['prompt_label']}" if row.get("prompt_label") else ""
    flag = " [yellow]drift[/]" if row.get("model_drift") else ""
    return f"{row['prompt_name']}{label} {(row.get('prompt_version') or '')[:8]}{flag}"


def _num(value: Any) -> str:
    return "?" if value is None else str(value)


def _store() -> Any:
    from ..store import open_store

    return open_store(load_settings().effective_store_url)
