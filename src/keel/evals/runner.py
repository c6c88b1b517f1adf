"""Running a suite: every case × prompt × model × repeat, concurrently, saved as they finish.

Calls go through the client's pipeline like any other (traced, tagged eval_run / suite / case).
`concurrency` workers per provider answer its items, so at most that many of its calls are in
flight; a feeder renders the items a batch ahead of them and reads the batch's cached answers in
one round trip. Scored answers are saved in batches (`ResultWriter`); a run that is cut short saves what
it scored, is left `interrupted`, and resuming it (by id, or automatically: the newest
unfinished run of the same suite content) runs only the answers not saved yet.

A re-run of an unchanged suite (same content, prompts, models, checks: keel.evals.reuse) starts
with the answers of the last such run, neither asked nor scored again; only the answers that failed
there are asked. Otherwise, answers are cached (unless `cache=False`, `keel eval run --no-cache`): each call uses the
response cache whatever its temperature, salted with its repeat number. Repeats within a run are
so many independent answers (different keys), while repeat i of a call is the same entry in every
run: a re-run of an unchanged suite, a new run, asks no model, and a changed case or prompt asks
only the calls that changed. A cached answer is scored again like a fresh one and saved with
`cached` set; its trace (a cache hit, cost 0) is linked to the new run. Its latency is that of
the upstream call that produced it (measured by the cache stage and kept with the entry), and its
cost what that call's usage costs at today's prices: the figures describe the model's answer, not
the cache, so latency and cost assertions, the cell's percentiles and cost totals come out as in
the run that asked (a fresh answer's latency also counts the local work around the call, rendering
and lookups, so the two differ by that much). Answers that failed are not cached: asked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, KeelError
from ..types import Cost
from ._base import Environment, Observation
from .assertions import score
from .dataset import Case
from .reuse import run_key
from .suite import Suite
from .summary import summarize

DEFAULT_CONCURRENCY = 4
#: Calls prepared (rendered) per batch ahead of the workers; a batch's cached answers are read in
#: one round trip (`AsyncClient.prefetch`), so a re-run costs a query per batch, not per answer.
#: Batches start small and double, so the workers get their first items at once.
FIRST_BATCH, PREPARE_AHEAD = 16, 256
#: Scored answers are saved in batches at most this many seconds apart, or as soon as this many
#: are waiting (so the save at the end, which the run waits for, is a small one), and at the end.
SAVE_INTERVAL = 0.25
SAVE_BATCH = 200


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
class Prepared:
    """An item ready to send: its call, or the error that preparing it raised."""

    item: Item
    tags: dict[str, Any]
    call: Any = None
    error: KeelError | None = None


@dataclass
class RunResult:
    run_id: str
    summary: dict[str, Any]
    resumed: bool
    skipped: int
    ran: int
    #: Answers of `ran` that came from the response cache or from `reused_from` (no upstream call).
    cached: int = 0
    #: The earlier run of the same suite, models and checks whose answers this run carried over.
    reused_from: str | None = None

    @property
    def passed(self) -> bool:
        return bool(self.summary["passed"])


class EvalRunner:
    """Runs one suite with a client (an AsyncClient) and saves to a store (keel.store.Store)."""

    def __init__(self, client: Any, store: Any, suite: Suite, *, concurrency: int | None = None, cache: bool = True,
                 on_start: Callable[[int, int], None] | None = None,
                 on_result: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.client, self.store, self.suite, self.cache = client, store, suite, cache
        self.concurrency = concurrency or suite.config.concurrency or DEFAULT_CONCURRENCY
        self.on_start, self.on_result = on_start, on_result
        self._params: dict[str, dict[str, Any]] = {}

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
        content, reusable = await run_key(self.client, self.suite, self.suite.content_hash(versions))
        run_id, resumed = self._start(resume, auto_resume, content, versions)
        reused = None if resumed or not reusable else await asyncio.to_thread(self._reuse, run_id, content)
        items = self.items()
        if reused is not None and reused[1] == len(items):  # every answer carried over: so is the summary
            return await self._carried_over(run_id, reused[0], len(items))
        reused_from = reused[0]["id"] if reused is not None else None
        kept = self.store.eval_results(run_id) if resumed or reused_from else []
        done = {(r["case_id"], r["model"], r["prompt"], r["repeat"]) for r in kept}
        todo = [item for item in items if item.key not in done]
        if self.on_start is not None:
            self.on_start(len(todo) + len(done), len(done))
        writer = ResultWriter(self.store)
        try:
            await self._answer_all(run_id, todo, writer)
            await writer.drain()
        except BaseException:
            await asyncio.shield(self._interrupted(run_id, writer))
            raise
        summary = summarize(kept + writer.rows, self.suite.config.thresholds.model_dump(), self.suite.config.repeat)
        await asyncio.to_thread(self.store.finish_eval_run, run_id, "finished", summary)
        cached = sum(1 for row in writer.rows if row["cached"])
        if reused_from is not None:
            return RunResult(run_id, summary, False, 0, len(todo) + len(kept), cached + len(kept), reused_from)
        return RunResult(run_id, summary, resumed, len(done), len(todo), cached)

    def _reuse(self, run_id: str, key: str) -> tuple[dict[str, Any], int] | None:
        """Start the new run with the answers of the last run of the same key (see keel.evals.reuse):
        that run, and how many answers came over."""
        if not (self.cache and self.client.settings.cache.enabled):
            return None
        source = self.store.reusable_eval_run(self.suite.name, key, time.time() - self.client.settings.cache.ttl)
        copied = self.store.copy_eval_results(source["id"], run_id) if source is not None else 0
        return (source, copied) if source is not None and copied else None

    async def _carried_over(self, run_id: str, source: dict[str, Any], items: int) -> RunResult:
        """Finish a run whose every answer came from `source`: its summary is the source's, each
        answer now counted as from cache."""
        if self.on_start is not None:
            self.on_start(items, items)
        summary = {**source["summary"], "cells": [{**cell, "cached": cell["items"]} for cell in source["summary"]["cells"]]}
        await asyncio.to_thread(self.store.finish_eval_run, run_id, "finished", summary)
        return RunResult(run_id, summary, False, 0, items, items, str(source["id"]))

    async def _interrupted(self, run_id: str, writer: "ResultWriter") -> None:
        """Keep every answer scored so far (a resume skips them), then mark the run interrupted."""
        try:
            await writer.drain()
        finally:
            await asyncio.to_thread(self.store.finish_eval_run, run_id, "interrupted")

    def _start(self, resume: str | None, auto: bool, content: str, versions: dict[str, str]) -> tuple[str, bool]:
        if resume is not None:
            run = self.store.get_eval_run(resume)
            if run is None:
                raise ConfigError(f"No eval run {resume!r} to resume; `keel eval list` shows the runs.")
            if run["suite"] != self.suite.name or run["suite_hash"] != content:
                raise ConfigError(f"Run {run['id'][:12]} is of another suite, or the suite, its prompts or models changed since "
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

    async def _answer_all(self, run_id: str, todo: list[Item], writer: "ResultWriter") -> None:
        """Per provider, a feeder preparing its items ahead and `concurrency` workers, each
        answering the prepared items one at a time."""
        by_provider: dict[str, list[Item]] = defaultdict(list)
        for item in todo:
            by_provider[self.client.resolve(item.model).provider.name].append(item)
        async with asyncio.TaskGroup() as group:
            for items in by_provider.values():
                workers = min(self.concurrency, len(items))
                queue: asyncio.Queue[Prepared | None] = asyncio.Queue(maxsize=PREPARE_AHEAD)
                group.create_task(self._feed(run_id, items, queue, workers))
                for _ in range(workers):
                    group.create_task(self._work(run_id, queue, writer))

    async def _feed(self, run_id: str, items: list[Item], queue: "asyncio.Queue[Prepared | None]", workers: int) -> None:
        """Prepare the items a batch at a time, read the batch's cached answers in one go, queue
        them; then one stop mark per worker."""
        start, size = 0, FIRST_BATCH
        while start < len(items):
            batch = [await self._prepared(run_id, item) for item in items[start:start + size]]
            start, size = start + size, min(2 * size, PREPARE_AHEAD)
            if self.cache:
                await self.client.prefetch([p.call for p in batch if p.call is not None])
            for prepared in batch:
                await queue.put(prepared)
        for _ in range(workers):
            await queue.put(None)

    async def _prepared(self, run_id: str, item: Item) -> Prepared:
        tags = {"eval_run": run_id, "suite": self.suite.name, "case": item.case.id}
        try:
            return Prepared(item, tags, call=await self._prepare(item, tags))
        except KeelError as exc:
            return Prepared(item, tags, error=exc)

    async def _work(self, run_id: str, queue: "asyncio.Queue[Prepared | None]", writer: "ResultWriter") -> None:
        while (prepared := await queue.get()) is not None:
            row = await self._answer(run_id, prepared)
            writer.add(row)
            if self.on_result is not None:
                self.on_result(row)

    async def _answer(self, run_id: str, prepared: Prepared) -> dict[str, Any]:
        item, tags, call = prepared.item, prepared.tags, prepared.call
        row: dict[str, Any] = {"run_id": run_id, "case_id": item.case.id, "model": item.model, "prompt": item.prompt,
                               "repeat": item.repeat, "created_at": time.time(), "cached": False}
        started = time.perf_counter()
        try:
            if prepared.error is not None:
                raise prepared.error
            response = await self.client.pipeline.complete(call)
        except KeelError as exc:
            text = getattr(exc, "text", None)
            row |= {"output": text if isinstance(text, str) else None, "passed": False, "score": 0.0,
                    "error": f"{type(exc).__name__}: {exc}", "latency_ms": (time.perf_counter() - started) * 1000,
                    "assertions": []}
            return row
        cached = call.notes.get("cache") == "hit"
        latency = call.notes.get("cache_latency_ms") if cached else None
        if latency is None:
            latency = (time.perf_counter() - started) * 1000
        cost = self._cost(call, response) if cached else response.cost
        return row | await self._scored(item, tags, response, latency, cost) | {"cached": cached}

    async def _scored(self, item: Item, tags: dict[str, Any], response: Any, latency: float, cost: Cost) -> dict[str, Any]:
        observation = Observation(response.content, item.case, item.model, item.prompt, latency, cost.amount)
        env = Environment(self.client, self.suite.config.judge_model, tags)
        value, outcomes = await score(self.suite.assertions_for(item.case), observation, env)
        return {
            "output": response.content, "passed": value >= self.suite.threshold_for(item.case), "score": value,
            "assertions": outcomes, "error": None, "latency_ms": latency, "trace_id": response.trace_id,
            "prompt_tokens": response.usage.prompt_tokens, "completion_tokens": response.usage.completion_tokens,
            "cost": str(cost.amount) if cost.amount is not None else None,
        }

    def _inline_params(self, name: str, spec: Any) -> dict[str, Any]:
        """The call parameters of an inline prompt: the suite's, its own, its output schema (once per run)."""
        params = self._params.get(name)
        if params is None:
            inline = next(p for p in self.suite.config.prompts if not isinstance(p, str) and p.name == name)
            params = {**self.suite.config.params, **inline.params}  # type: ignore[union-attr]
            if spec.output is not None:
                params.setdefault("json_schema", spec.output)
            self._params[name] = params
        return params

    def _cost(self, call: Any, response: Any) -> Cost:
        """What a cached answer costs when asked for (its trace records the nothing it cost now)."""
        target = call.target
        return self.client.prices.cost(target.provider.name, target.pricing_id, target.model, response.usage)

    async def _prepare(self, item: Item, tags: dict[str, Any]) -> Any:
        spec = self.suite.inline.get(item.prompt)
        if spec is None:
            params = dict(self.suite.config.params)
            call = await self.client.prepare_prompt(item.prompt, variables=item.case.vars, model=item.model, **params)
            call.tags = {**call.tags, **tags}
        else:
            params = dict(self._inline_params(item.prompt, spec))
            call = self.client.prepare(spec.render(item.case.vars), model=item.model, tags=tags, **params)
        # Repeats are independent answers (each its own entry), yet a re-run asks nothing again.
        call.cache, call.cache_salt = (True, f"eval-repeat:{item.repeat}") if self.cache else (False, None)
        return call


class ResultWriter:
    """Saves scored answers in batches, in a worker thread, off the event loop: a batch is what
    arrived within `interval` seconds, or `batch` answers when they come faster (an interrupted
    run loses none: `drain` saves the rest at once). `rows` keeps every answer given to it. A failed save fails the next `add` and `drain`
    (the run stops, as it would have on that answer)."""

    def __init__(self, store: Any, interval: float = SAVE_INTERVAL, batch: int = SAVE_BATCH) -> None:
        self.store, self.interval, self.batch = store, interval, batch
        self.rows: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._now = asyncio.Event()
        self._draining = False
        self._error: BaseException | None = None

    def add(self, row: dict[str, Any]) -> None:
        if self._error is not None:
            raise self._error
        self.rows.append(row)
        self._pending.append(row)
        if len(self._pending) >= self.batch:
            self._now.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write())

    async def drain(self) -> None:
        """Save every answer added so far, now."""
        self._draining = True
        self._now.set()
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self._error is not None:
            raise self._error

    async def _write(self) -> None:
        try:
            while self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._now.wait(), self.interval)
                if not self._draining:
                    self._now.clear()  # a full batch went early: the next one waits again
                batch, self._pending = self._pending, []
                await asyncio.to_thread(self.store.save_eval_results, batch)
        except Exception as exc:
            self._error = exc
