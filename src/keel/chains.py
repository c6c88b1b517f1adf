"""Typed chains: prompts and Python functions run in order, each boundary validated, one trace.

    chain = Chain(
        PromptStep("extract_invoice", output=Invoice),             # a prompt file, by name
        FunctionStep(summarize, input=Invoice, output=Summary),     # sync or async
        PromptStep(lambda s: f"Write a reminder for {s.customer}.", output=Reminder, model="cheap"),
    )
    result = await chain.run(client, {"text": "..."})   # result.output: a Reminder
    result = chain.run_sync(sync_client, {"text": "..."})

Every step declares its input and output types (a function's default to its annotations; a
prompt's output is its `output=` type, or the answer text). Values are validated with a pydantic
TypeAdapter going into each step and coming out of it; the first value that does not fit stops
the chain with ChainStepError naming the step, the field and the bad value. A prompt step's
answer is enforced and repaired by the StructuredStage before it is checked here.

A prompt step gets its input as the prompt's variables (a model or dict as its fields, any other
value as `input`); a callable instead of a name turns the input into the messages.

The chain is one trace: a root id, every LLM call with `parent_id` = root and tags `chain`/`step`;
when the client records, the root (kind "chain") and each function step (kind "function") are
recorded too.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from pydantic import TypeAdapter, ValidationError

from .errors import ChainStepError, OutputValidationError
from .structured.spec import OutputSpec, Problem, problems_of, strip_fences
from .structured.stage import NOTES

_ANY: TypeAdapter[Any] = TypeAdapter(Any)




@dataclass
class StepRecord:
    name: str
    kind: str
    input: Any
    output: Any
    trace_id: str
    parent_id: str


@dataclass
class ChainResult:
    output: Any
    steps: list[StepRecord]
    trace_id: str


@dataclass
class _Run:
    """One run of a chain: the client, the root trace id, and where records go."""

    client: Any
    chain: str
    tags: dict[str, Any]
    root: str = field(default_factory=lambda: os.urandom(16).hex())
    steps: list[StepRecord] = field(default_factory=list)

    def record(self, **fields: Any) -> None:
        if getattr(self.client, "_record", False):
            self.client.recorder.record(_record(source=getattr(self.client, "source", "library"), **fields))


class Step:
    kind = "step"
    name: str

    def __init__(self, input: Any, output: Any) -> None:
        self.input, self.output = input, output
        self.adapters = {"input": TypeAdapter(input), "output": TypeAdapter(output)}

    async def call(self, run: _Run, value: Any) -> tuple[Any, str]:
        """The step's output for `value`, and the trace id it ran under."""
        raise NotImplementedError

    def checked(self, index: int, boundary: str, value: Any) -> Any:
        try:
            return self.adapters[boundary].validate_python(value)
        except ValidationError as exc:
            raise ChainStepError(self.name, index, boundary, problems_of(exc)) from None


class FunctionStep(Step):
    kind = "function"

    def __init__(self, fn: Callable[[Any], Any], *, input: Any = None, output: Any = None,
                 name: str | None = None) -> None:
        hints = _hints(fn)
        super().__init__(hints.get("input", Any) if input is None else input,
                         hints.get("return", Any) if output is None else output)
        self.fn = fn
        self.name = name or str(getattr(fn, "__name__", "function"))

    async def call(self, run: _Run, value: Any) -> tuple[Any, str]:
        trace_id, started = os.urandom(16).hex(), time.time()
        try:
            result = self.fn(value)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            run.record(id=trace_id, parent_id=run.root, kind=self.kind, name=self.name, started=started,
                       input=value, tags=run.tags, error=exc)
            raise
        run.record(id=trace_id, parent_id=run.root, kind=self.kind, name=self.name, started=started,
                   input=value, tags=run.tags, output=result)
        return result, trace_id


class PromptStep(Step):
    kind = "prompt"

    def __init__(self, prompt: str | Callable[[Any], Any], *, output: Any = None, input: Any = Any,
                 model: str | None = None, name: str | None = None, **options: Any) -> None:
        self.spec = OutputSpec.of(output) if output is not None else None
        super().__init__(input, str if self.spec is None else (self.spec.type or Any))
        self.prompt, self.model, self.options = prompt, model, options
        self.name = name or (prompt if isinstance(prompt, str) else str(getattr(prompt, "__name__", "prompt")))

    async def call(self, run: _Run, value: Any) -> tuple[Any, str]:
        call = await self._prepare(run.client, value)
        call.parent_id = run.root
        call.tags = {**run.tags, **call.tags, "chain": run.chain, "step": self.name}
        call.output = self.spec
        response = await run.client.pipeline.complete(call)
        if self.spec is None:
            return response.content, call.trace_id
        if NOTES in call.notes:  # the StructuredStage validated (and repaired) it
            return response.parsed, call.trace_id
        return self.spec.validate(strip_fences(response.content)), call.trace_id

    async def _prepare(self, client: Any, value: Any) -> Any:
        if isinstance(self.prompt, str):
            return await client.prepare_prompt(self.prompt, variables=_variables(value), model=self.model,
                                                **self.options)
        return client.prepare(self.prompt(value), model=self.model, **self.options)


class Chain:
    def __init__(self, *steps: Step, name: str = "chain") -> None:
        if not steps:
            raise ValueError("A chain needs at least one step.")
        self.steps, self.name = list(steps), name

    @property
    def input(self) -> Any:
        return self.steps[0].input

    @property
    def output(self) -> Any:
        return self.steps[-1].output

    async def run(self, client: Any, input: Any, *, tags: dict[str, Any] | None = None) -> ChainResult:
        """Run every step on `client` (an AsyncClient); ChainStepError at the first boundary that does not fit."""
        run, started = _Run(client, self.name, dict(tags or {})), time.time()
        try:
            output = await self._steps(run, input)
        except Exception as exc:
            self._record_root(run, started, input, error=exc)
            raise
        self._record_root(run, started, input, output=output)
        return ChainResult(output, run.steps, run.root)

    def run_sync(self, client: Any, input: Any, *, tags: dict[str, Any] | None = None) -> ChainResult:
        """`run` on a synchronous keel.Client (on that client's event loop)."""
        result: ChainResult = client._run(self.run(client.aio, input, tags=tags))
        return result

    async def _steps(self, run: _Run, value: Any) -> Any:
        for index, step in enumerate(self.steps, 1):
            value = step.checked(index, "input", value)
            try:
                output, trace_id = await step.call(run, value)
            except ChainStepError:
                raise
            except OutputValidationError as exc:
                problems = getattr(exc, "problems", None) or [Problem("(root)", str(exc), None)]
                raise ChainStepError(step.name, index, "output", problems,
                                     attempts=getattr(exc, "attempts", None)) from exc
            output = step.checked(index, "output", output)
            run.steps.append(StepRecord(step.name, step.kind, value, output, trace_id, run.root))
            value = output
        return value

    def _record_root(self, run: _Run, started: float, input: Any, **outcome: Any) -> None:
        run.record(id=run.root, parent_id=None, kind="chain", name=self.name, started=started, input=input,
                   tags=run.tags, steps=[step.name for step in self.steps], **outcome)


def _record(*, id: str, parent_id: str | None, kind: str, name: str, started: float, input: Any,
            tags: dict[str, Any], source: str, output: Any = None, error: BaseException | None = None,
            **notes: Any) -> dict[str, Any]:
    """A trace record for a chain root or a function step (the chat record's shape, no model fields)."""
    ended = time.time()
    return {
        "id": id, "parent_id": parent_id, "kind": kind, "source": source,
        "started_at": started, "ended_at": ended, "latency_ms": (ended - started) * 1000,
        "request": {"input": _jsonable(input)},
        "response": None if error is not None else {"output": _jsonable(output)},
        "status": "error" if error is not None else "ok",
        "error_class": type(error).__name__ if error is not None else None,
        "error_message": str(error)[:2000] if error is not None else None,
        "stream": False, "tags": tags, "notes": {"name": name, **notes},
    }


def _jsonable(value: Any) -> Any:
    try:
        return _ANY.dump_python(value, mode="json")
    except Exception:  # a value pydantic cannot serialise is recorded as its repr
        return repr(value)


def _variables(value: Any) -> dict[str, Any]:
    data = _jsonable(value)
    return data if isinstance(data, dict) else {"input": data}


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """{"input": the first parameter's annotation, "return": the return annotation}, where given."""
    try:
        hints = get_type_hints(fn)
        first = next(iter(inspect.signature(fn).parameters), None)
    except (NameError, TypeError, ValueError):
        return {}
    found = {"input": hints[first]} if first in hints else {}
    return {**found, **({"return": hints["return"]} if "return" in hints else {})}
