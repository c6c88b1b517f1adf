"""`keel models`: every configured model, where it runs, and what it is good for."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ..client import AsyncClient
from ..settings import load_settings


def models(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List model aliases with their provider, region and description."""
    client = AsyncClient(load_settings(), record=False)
    rows = []
    for name in client.known_models():
        target = client.resolve(name)
        provider = target.provider
        rows.append(
            {
                "name": name,
                "provider": provider.name,
                "type": provider.kind,
                "model": target.model,
                "region": provider.region or "",
                "jurisdiction": provider.jurisdiction or "",
                "default": name == client.settings.default_model,
                "description": provider.describe(target.model),
            }
        )
    if json_output:
        import json

        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("model", "provider", "upstream id", "where", "what it is")
    for row in rows:
        mark = " (default)" if row["default"] else ""
        table.add_row(row["name"] + mark, f"{row['provider']} ({row['type']})", row["model"], row["jurisdiction"], row["description"])
    Console().print(table)
