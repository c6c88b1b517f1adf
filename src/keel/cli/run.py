"""`keel run`: one call through the pipeline, from the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ..errors import ConfigError
from ..settings import load_settings
from ..sync import Client

err = Console(stderr=True)


def run(
    text: str = typer.Argument(..., help="The user message."),
    model: str | None = typer.Option(None, "-m", "--model", help="Model alias or provider/model-id."),
    system: str | None = typer.Option(None, "--system", help="A system message."),
    json_schema: Path | None = typer.Option(None, "--json-schema", help="File with a JSON schema the answer must follow."),
    stream: bool = typer.Option(False, "--stream", help="Print tokens as they arrive."),
    temperature: float | None = typer.Option(None, "--temperature"),
    max_tokens: int | None = typer.Option(None, "--max-tokens"),
    seed: int | None = typer.Option(None, "--seed"),
) -> None:
    """Send one message and print the answer."""
    options: dict[str, Any] = {"system": system, "temperature": temperature, "max_tokens": max_tokens, "seed": seed}
    if json_schema is not None:
        options["json_schema"] = _read_schema(json_schema)
    with Client(load_settings()) as client:
        if stream:
            for chunk in client.stream(text, model=model, **options):
                typer.echo(chunk.text, nl=False)
            typer.echo()
        else:
            response = client.complete(text, model=model, **options)
            typer.echo(response.content)
            cost = "unknown" if response.cost.amount is None else f"${response.cost.amount:.6f}"
            err.print(
                f"[dim]{response.provider} · {response.usage.prompt_tokens}+{response.usage.completion_tokens} tokens · "
                f"cost {cost} · trace {response.trace_id}[/]",
                highlight=False,
            )


def _read_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found. Pass a JSON schema file to --json-schema.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}). The --json-schema file must hold a JSON schema.") from None
    if not isinstance(schema, dict):
        raise ConfigError(f"{path}: a JSON schema must be an object, got {type(schema).__name__}.")
    return schema
