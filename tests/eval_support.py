"""Helpers for the eval tests: suites written into the test's project, run with a fresh client."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from keel import AsyncClient
from keel.evals.runner import EvalRunner, RunResult
from keel.evals.suite import load_suite
from keel.store import open_store

T = TypeVar("T")

ECHO_SUITE = """\
prompts:
  - name: echo
    messages: [{role: user, content: "{{ text }}"}]
models: [fake/echo]
dataset:
  cases:
    - {id: a, vars: {text: one}, expected: "Echo: one"}
    - {id: b, vars: {text: two}, expected: "Echo: two"}
    - {id: c, vars: {text: three}, expected: "Echo: nope"}
assertions:
  - {type: equals}
repeat: 2
thresholds: {pass_rate: 0.5}
"""


def suite_text(models: str = "[fake/echo]", more_prompts: str = "", pass_rate: float = 0.5) -> str:
    """ECHO_SUITE on other models, with more prompts (YAML list items) or another pass-rate threshold."""
    return (ECHO_SUITE.replace("models: [fake/echo]", more_prompts + f"models: {models}")
            .replace("pass_rate: 0.5", f"pass_rate: {pass_rate}"))


def write_suite(folder: Path, text: str, name: str = "s.eval.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def run_suite(path: Path, *, client_setup: Callable[[AsyncClient], None] | None = None, **options: Any) -> RunResult:
    """Load and run a suite with a fresh client and store in the current project."""

    async def go() -> RunResult:
        async with AsyncClient() as client:
            if client_setup is not None:
                client_setup(client)
            store = open_store(client.settings.effective_store_url)
            try:
                return await EvalRunner(client, store, load_suite(path), **options).run()
            finally:
                client.flush()
                store.close()

    return asyncio.run(go())


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)
