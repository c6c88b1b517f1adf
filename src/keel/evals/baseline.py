"""Baselines: the eval run a prompt's lock entry points at, and the CI gate against it.

`keel lock --baseline RUN` records RUN as the baseline of every locked prompt it evaluated (at the
prompt's current version). `keel eval run SUITE --baseline` compares the new run with each prompt's
baseline, answer by answer, and fails on a regression that McNemar's exact test finds significant.
`keel check` reports a baseline that is missing from the store or was run on another version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..prompts.lockfile import Lockfile
from .compare import compare_runs

SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Verdict:
    prompt: str
    baseline_run: str
    comparison: dict[str, Any]

    @property
    def regressed(self) -> bool:
        c = self.comparison
        return c["delta"] < 0 and c["mcnemar_p"] < SIGNIFICANCE


def run_versions(run: dict[str, Any]) -> dict[str, str]:
    return dict((run.get("config") or {}).get("_prompt_versions") or {})


def record_baseline(lock: Lockfile, run: dict[str, Any]) -> list[str]:
    """Point each locked prompt the run evaluated at it; the prompts updated."""
    versions = run_versions(run)
    if run.get("status") != "finished":
        raise ConfigError(f"Run {run['id'][:12]} is {run.get('status')}, not finished: finish it (`keel eval run --resume`) first.")
    updated = []
    for name, version in sorted(versions.items()):
        entry = lock.get(name)
        if entry is None:
            continue
        if entry.version != version:
            raise ConfigError(
                f"Run {run['id'][:12]} evaluated {name} at version {version[:12]}, but keel.lock has {entry.version[:12]}: "
                f"run the suite again on the locked version, or `keel lock --update {name}` first."
            )
        lock.set(name, entry.model_copy(update={"baseline_run": run["id"]}))
        updated.append(name)
    if not updated:
        raise ConfigError(f"Run {run['id'][:12]} evaluated no locked prompt ({', '.join(versions) or 'none'}). Lock them first.")
    return updated


def gate(store: Any, lock: Lockfile, run: dict[str, Any]) -> list[Verdict]:
    """Compare a finished run with each of its prompts' baselines."""
    results = store.eval_results(run["id"])
    verdicts = []
    for name in sorted(run_versions(run)):
        entry = lock.get(name)
        if entry is None or not entry.baseline_run:
            raise ConfigError(f"Prompt {name!r} has no baseline in keel.lock. Record one with `keel lock --baseline RUN_ID`.")
        baseline = store.get_eval_run(entry.baseline_run)
        if baseline is None:
            raise ConfigError(f"The baseline run {entry.baseline_run[:12]} of {name!r} is not in this store. Record a new one.")
        before = [r for r in store.eval_results(baseline["id"]) if r["prompt"] == name]
        after = [r for r in results if r["prompt"] == name]
        verdicts.append(Verdict(name, baseline["id"], compare_runs(before, after)))
    return verdicts


def baseline_problems(store: Any, lock: Lockfile) -> list[str]:
    """Lock entries whose baseline run is gone or was made on another prompt version."""
    problems = []
    for name, entry in sorted(lock.entries.items()):
        if not entry.baseline_run:
            continue
        run = store.get_eval_run(entry.baseline_run)
        if run is None:
            problems.append(f"{name}: its eval baseline {entry.baseline_run[:12]} is missing from the store; record a new one.")
        elif run_versions(run).get(name) != entry.version:
            problems.append(f"{name}: its eval baseline {entry.baseline_run[:12]} was run on another version of the prompt "
                            "(stale); run the suite and `keel lock --baseline RUN_ID`.")
    return problems
