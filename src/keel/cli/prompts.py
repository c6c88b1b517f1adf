"""`keel prompts …`: list, show, diff, history, promote, rollback and render prompt files."""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..client import AsyncClient
from ..errors import ConfigError, PromptNotFound
from ..prompts.diff import diff_definitions
from ..settings import load_settings

app = typer.Typer(help="Prompt files, their versions and labels.", no_args_is_help=True)
console = Console()


def _client() -> AsyncClient:
    return AsyncClient(load_settings(), record=False)


@app.command("list")
def list_prompts() -> None:
    """Every prompt file with its current version, model and labels."""
    client = _client()
    table = Table("prompt", "version", "model", "labels", "description")
    for name in client.prompts.library.names():
        spec = client.prompts.library.get(name)
        labels = client.prompts.store().labels(name)
        marks = ", ".join(f"{k}={'current' if v == spec.version else v[:8]}" for k, v in sorted(labels.items()))
        table.add_row(name, spec.short_version, spec.model, marks, spec.description or "")
    console.print(table)


@app.command("show")
def show(name: str, version: str | None = typer.Option(None, "--version", help="A stored version (default: the file).")) -> None:
    """A prompt's definition, its stored versions and labels."""
    client = _client()
    definition, current = _definition(client, name, version)
    console.print(f"[bold]{name}[/] @ {current[:12]}", highlight=False)
    console.print(_yaml(definition), markup=False, highlight=False)
    store = client.prompts.store()
    labels = store.labels(name)
    for row in store.list_prompt_versions(name):
        names = [k for k, v in labels.items() if v == row["version"]]
        when = datetime.fromtimestamp(row["created_at"]).strftime("%Y-%m-%d %H:%M")
        console.print(f"  {row['version'][:12]}  {when}  {', '.join(names)}", highlight=False)


@app.command("diff")
def diff(name: str, old: str | None = typer.Argument(None), new: str | None = typer.Argument(None)) -> None:
    """What changed between two versions (default: the locked or previous version → the file)."""
    client = _client()
    if old is None:
        old = _baseline_version(client, name)
    old_def, _ = _definition(client, name, old)
    new_def, _ = _definition(client, name, new)
    text = diff_definitions(old_def, new_def)
    console.print(text or "no difference", markup=False, highlight=False)


@app.command("history")
def history(name: str, label: str | None = typer.Option(None, "--label")) -> None:
    """Every label move of a prompt: who, when, why."""
    client = _client()
    client.prompts.library.get(name)
    table = Table("when", "label", "from", "to", "who", "why")
    for move in client.prompts.store().label_history(name, label):
        when = datetime.fromtimestamp(move["moved_at"]).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(when, move["label"], (move["old_version"] or "-")[:12], move["new_version"][:12], move["actor"], move["reason"] or "")
    console.print(table)


@app.command("promote")
def promote(
    name: str,
    label: str,
    version: str | None = typer.Option(None, "--version", help="A stored version (default: the file as it is now)."),
    reason: str | None = typer.Option(None, "--reason", "-r"),
) -> None:
    """Point LABEL (dev, staging, production, …) at a version of the prompt."""
    client = _client()
    if version is None:
        spec = client.prompts.library.get(name)
        client.prompts.remember(spec)
        version = spec.version
    else:
        version = _stored(client, name, version)["version"]
    old = client.prompts.store().set_label(name, label, version, actor=_actor(), reason=reason)
    console.print(f"{name}@{label}: {(old or '-')[:12]} → {version[:12]}", highlight=False)


@app.command("rollback")
def rollback(name: str, label: str, reason: str | None = typer.Option(None, "--reason", "-r")) -> None:
    """Move LABEL back to the version it pointed at before its last move."""
    client = _client()
    store = client.prompts.store()
    moves = store.label_history(name, label)
    if not moves or not moves[0]["old_version"]:
        raise ConfigError(f"{name}@{label} has no earlier version to roll back to. `keel prompts history {name}` shows its moves.")
    target = moves[0]["old_version"]
    store.set_label(name, label, target, actor=_actor(), reason=reason or "rollback")
    console.print(f"{name}@{label}: {moves[0]['new_version'][:12]} → {target[:12]} (rolled back)", highlight=False)


@app.command("render")
def render(
    name: str,
    var: list[str] = typer.Option([], "--var", help="k=v (value parsed as JSON when it can be)."),
    model: list[str] = typer.Option([], "--model", "-m", help="Count tokens for these models too."),
) -> None:
    """The exact messages a call would send, with token counts per target model."""
    asyncio.run(_render(name, dict(_parse_var(v) for v in var), model))


async def _render(name: str, variables: dict[str, Any], models: list[str]) -> None:
    client = _client()
    try:
        spec = client.prompts.library.get(name)
        messages = spec.render(variables)
        for message in messages:
            console.print(f"[bold]{message['role']}[/]:", highlight=False)
            console.print(message["content"], markup=False, highlight=False)
        for target in [spec.model, *models]:
            counted = await _count(client, target, messages)
            console.print(f"[dim]{target}: {counted if counted is not None else 'no offline tokenizer'} prompt tokens[/]", highlight=False)
    finally:
        await client.aclose()


async def _count(client: AsyncClient, model: str, messages: list[dict[str, Any]]) -> int | None:
    target = client.resolve(model)
    return await target.provider.count_prompt_tokens(messages, target.model)


def _parse_var(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--var {item!r}: write it as name=value.")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def _definition(client: AsyncClient, name: str, version: str | None) -> tuple[dict[str, Any], str]:
    if version is None:
        spec = client.prompts.library.get(name)
        return spec.definition(), spec.version
    row = _stored(client, name, version)
    return row["definition"], row["version"]


def _stored(client: AsyncClient, name: str, version: str) -> dict[str, Any]:
    row = client.prompts.store().get_prompt_version(name, version)
    if row is None:
        raise PromptNotFound(f"Prompt {name!r} has no stored version {version!r}. `keel prompts show {name}` lists them.")
    return row


def _baseline_version(client: AsyncClient, name: str) -> str:
    entry = client.prompts.locked(name)
    if entry is not None:
        return entry.version
    versions = client.prompts.store().list_prompt_versions(name)
    if len(versions) < 2:
        raise ConfigError(f"Prompt {name!r} has no locked or earlier version to compare with. Give two versions.")
    return versions[1]["version"]


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _yaml(definition: dict[str, Any]) -> str:
    from ..prompts.diff import definition_text

    return definition_text(definition)
