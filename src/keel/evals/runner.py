"""Running a suite: every case × prompt × model × repeat, concurrently, saved as each finishes.

Calls go through the client's pipeline like any other (traced, tagged eval_run / suite / case)
but bypass the response cache, so repeats are independent. At most `concurrency` calls are in
flight per provider. Each scored answer is saved at once; a run that is cut short is left
`interrupted` and resuming it (by id, or automatically: the newest unfinished run of the same
suite content) runs only the answers not saved yet.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, KeelError
from ._base import Environment, Observation
from .assertions import score
from .dataset import Case
from .suite import Suite
from .summary import summarize

DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True)
class Item:
    case: Case
    prompt: str
    model: str
    repeat: int

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.case.id, self.model, self.prompt, self.repeat)


@dataclass
class RunResult:
    run_id: str
    summary: dict[str, Any]
    resumed: bool
    skipped: int
    ran: int

    @property
    def passed(self) -> bool:
        return bool(self.summary["passed"])


class EvalRunner:
    """Runs one suite with a client (an AsyncClient) and saves to a store (keel.store.Store)."""

    def __init__(self, client: Any, store: Any, suite: Suite, *, concurrency: int | None = None,
                 on_start: Callable[[int, int], None] | None = None,
                 on_result: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.client, self.store, self.suite = client, store, suite
        self.concurrency = concurrency or suite.config.concurrency or DEFAULT_CONCURRENCY
        self.on_start, self.on_result = on_start, on_result
        self._limits: dict[str, asyncio.Semaphore] = {}

    def items(self) -> list[Item]:
        s = self.suite
        return [Item(case, prompt, model, repeat) for prompt in s.prompt_names for model in s.config.models
                for case in s.cases for repeat in range(s.config.repeat)]

    def prompt_versions(self) -> dict[str, str]:
        library = self.client.prompts.library
        return {name: library.get(name).version for name in self.suite.prompt_names if name not in self.suite.inline}

    async def run(self, resume: str | None = None, *, auto_resume: bool = True) -> RunResult:
        self.suite.check_ready()
        for model in self.suite.config.models:
            self.client.resolve(model)  # unknown models fail before any call
        versions = self.prompt_versions()
        content = self.suite.content_hash(versions)
        run_id, resumed = self._start(resume, auto_resume, content, versions)
        done = {(r["case_id"], r["model"], r["prompt"], r["repeat"]) for r in self.store.eval_results(run_id)}
        todo = [item for item in self.items() if item.key not in done]
        if self.on_start is not None:
            self.on_start(len(todo) + len(done), len(done))
        try:
            async with asyncio.TaskGroup() as group:
                for item in todo:
                    group.create_task(self._run_item(run_id, item))
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self.store.finish_eval_run, run_id, "interrupted"))
            raise
        summary = summarize(self.store.eval_results(run_id), self.suite.config.thresholds.model_dump(), self.suite.config.repeat)
        self.store.finish_eval_run(run_id, "finished", summary)
        return RunResult(run_id, summary, resumed, len(done), len(todo))

    def _start(self, resume: str | None, auto: bool, content: str, versions: dict[str, str]) -> tuple[str, bool]:
        if resume is not None:
            run = self.store.get_eval_run(resume)
            if run is None:
                raise ConfigError(f"No eval run {resume!r} to resume; `keel eval list` shows the runs.")
            if run["suite"] != self.suite.name or run["suite_hash"] != content:
                raise ConfigError(f"Run {run['id'][:12]} is of another suite or the suite changed since "
                                  f"(suite {run['suite']!r}); run without --resume to start afresh.")
            return run["id"], True
        if auto:
            run = self.store.unfinished_eval_run(self.suite.name, content)
            if run is not None:
                return run["id"], True
        run_id = uuid.uuid4().hex
        config = self.suite.config.model_dump(mode="json") | {
            "_path": str(self.suite.path) if self.suite.path else None, "_prompt_versions": versions}
        self.store.create_eval_run(run_id, self.suite.name, content, config)
        return run_id, False

    def _limit(self, model: str) -> asyncio.Semaphore:
        provider = self.client.resolve(model).provider.name
        if provider not in self._limits:
            self._limits[provider] = asyncio.Semaphore(self.concurrency)
        return self._limits[provider]

    async def _run_item(self, run_id: str, item: Item) -> None:
        tags = {"eval_run": run_id, "suite": self.suite.name, "case": item.case.id}
        async with self._limit(item.model):
            row = await self._answer(run_id, item, tags)
        await asyncio.to_thread(self.store.save_eval_result, row)
        if self.on_result is not None:
            self.on_result(row)

    async def _answer(self, run_id: str, item: Item, tags: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"run_id": run_id, "case_id": item.case.id, "model": item.model, "prompt": item.prompt,
                               "repeat": item.repeat, "created_at": time.time()}
        started = time.perf_counter()
        try:
            call = await self._prepare(item, tags)
            response = await self.client.pipeline.complete(call)
        except KeelError as exc:
            text = getattr(exc, "text", None)
            row |= {"output": text if isinstance(text, str) else None, "passed": False, "score": 0.0,
                    "error": f"{type(exc).__name__}: {exc}", "latency_ms": (time.perf_counter() - started) * 1000,
                    "assertions": []}
            return row
        latency = (time.perf_counter() - started) * 1000
        observation = Observation(response.content, item.case, item.model, item.prompt, latency, response.cost.amount)
        env = Environment(self.client, self.suite.config.judge_model, tags)
        value, outcomes = await score(self.suite.assertions_for(item.case), observation, env)
        return row | {
            "output": response.content, "passed": value >= self.suite.threshold_for(item.case), "score": value,
            "assertions": outcomes, "error": None, "latency_ms": latency, "trace_id": response.trace_id,
            "prompt_tokens": response.usage.prompt_tokens, "completion_tokens": response.usage.completion_tokens,
            "cost": str(response.cost.amount) if response.cost.amount is not None else None,
        }

    async def _prepare(self, item: Item, tags: dict[str, Any]) -> Any:
        params = dict(self.suite.config.params)
        spec = self.suite.inline.get(item.prompt)
        if spec is None:
            call = await self.client.prepare_prompt(item.prompt, variables=item.case.vars, model=item.model, **params)
            call.tags = {**call.tags, **tags}
        else:
            inline = next(p for p in self.suite.config.prompts if not isinstance(p, str) and p.name == item.prompt)
            params = {**params, **inline.params}  # type: ignore[union-attr]
            if spec.output is not None:
                params.setdefault("json_schema", spec.output)
            call = self.client.prepare(spec.render(item.case.vars), model=item.model, tags=tags, **params)
        call.cache = False  # repeats must be independent answers
        return call
