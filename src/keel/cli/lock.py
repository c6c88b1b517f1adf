"""`keel lock` and `keel check`: pin prompts to exact models, and fail CI when either moved."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import typer
from rich.console import Console

from ..client import AsyncClient
from ..errors import ConfigError
from ..prompts.diff import diff_definitions
from ..prompts.drift import Drift
from ..prompts.lockfile import Lockfile, editing
from ..prompts.pinning import drifts, entry_for
from ..settings import load_settings

console = Console()


def lock(
    update: list[str] = typer.Option([], "--update", "-u", help="Re-lock only these prompts (repeatable)."),
    baseline: str | None = typer.Option(None, "--baseline", help="Record this eval run as the baseline of the prompts it evaluated."),
) -> None:
    """Write keel.lock: each prompt's version, resolved model identity and reference token count."""
    if baseline is not None:
        return _record_baseline(baseline)
    asyncio.run(_lock(update))


def _record_baseline(run_id: str) -> None:
    from ..evals.baseline import record_baseline
    from ..store import open_store

    settings = load_settings()
    with open_store(settings.effective_store_url) as store:
        run = store.get_eval_run(run_id)
        if run is None:
            raise ConfigError(f"No eval run {run_id!r}; `keel eval list` shows the runs.")
        with editing(settings.lock_path) as lockfile:
            updated = record_baseline(lockfile, run)
    console.print(f"baseline {run['id'][:12]} recorded for {', '.join(updated)}", highlight=False)


def check() -> None:
    """Exit non-zero, with a report, when prompts or their models drifted from keel.lock."""
    found = asyncio.run(_check())
    if found:
        raise typer.Exit(1)


async def _lock(only: list[str]) -> None:
    client = AsyncClient(load_settings(), record=False)
    try:
        library = client.prompts.library
        names = library.names()
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ConfigError(f"No prompt named {', '.join(unknown)} in {library.root}. Prompts: {', '.join(names) or 'none'}.")
        entries = {name: await entry_for(client, library.get(name)) for name in (only or names)}
        with editing(client.settings.lock_path) as lockfile:
            for name, entry in entries.items():
                old = lockfile.get(name)
                if old is not None and old.baseline_run:
                    entry = entry.model_copy(update={"baseline_run": old.baseline_run})
                lockfile.set(name, entry)
            if not only:
                for stale in set(lockfile.entries) - set(names):
                    lockfile.remove(stale)
        for name, entry in sorted(entries.items()):
            console.print(f"locked [bold]{name}[/] {entry.version[:12]} → {entry.model.provider}/{entry.model.model}", highlight=False)
        console.print(f"wrote {client.settings.lock_path}", highlight=False)
    finally:
        await client.aclose()


async def _check() -> list[Drift]:
    client = AsyncClient(load_settings(), record=False)
    try:
        path = client.settings.lock_path
        if not path.exists():
            raise ConfigError(f"No lockfile at {path}. Run `keel lock` and commit keel.lock.")
        lockfile = Lockfile.read(path)
        found: list[Any] = await drifts(client, lockfile)
        for drift in found:
            _report(client, drift)
        from ..evals.baseline import baseline_problems

        for problem in baseline_problems(client.prompts.store(), lockfile):
            console.print(f"[red]✗[/] {problem}", highlight=False)
            found.append(problem)
        _report_runtime_drift(client, lockfile)
        if found:
            console.print(f"[bold red]{len(found)} problem(s)[/]: review them, then run `keel lock` (or `keel lock --update NAME`).")
        else:
            console.print("[green]keel.lock is up to date[/]: every prompt and model matches.")
        return found
    finally:
        await client.aclose()


def _report(client: AsyncClient, drift: Drift) -> None:
    console.print(f"[red]✗[/] {drift.message}", highlight=False)
    if drift.kind != "prompt_changed":
        return
    old = client.prompts.store().get_prompt_version(drift.name, drift.old)
    if old is None:
        console.print("  (the locked version is not in this store, so no diff can be shown)")
        return
    new = client.prompts.library.get(drift.name).definition()
    console.print(_indent(diff_definitions(old["definition"], new)), highlight=False, markup=False)


def _report_runtime_drift(client: AsyncClient, lockfile: Lockfile) -> None:
    """Calls in the last week whose answering model differed from the lock (flagged in traces)."""
    since = time.time() - 7 * 86400
    for name in sorted(lockfile.entries):
        stats = client.prompts.store().prompt_call_stats(name, since=since)
        if stats["drift_calls"]:
            console.print(
                f"[yellow]![/] {name}: {stats['drift_calls']} of {stats['calls']} calls in the last 7 days were answered "
                "by a different model or fingerprint than locked (`keel traces list --json` shows them).",
                highlight=False,
            )


def _indent(text: Any) -> str:
    return "\n".join("    " + line for line in str(text).splitlines())
