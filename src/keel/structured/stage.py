"""`StructuredStage`: enforce `call.output` on the way down, validate and repair on the way up.

Only calls with `call.output` set are touched. The stage picks the call's path (see `paths`),
shapes the request for it, and validates the answer: JSON (inside a Markdown code fence too) that
matches the schema becomes `response.parsed`. An answer that does not match (free text from an
endpoint that ignored the response format, a wrong shape, an OutputValidationError the provider
raised itself, as the local provider does) is repaired: the call is asked again with the rejected
answer and the list of what is wrong, at most `max_repairs` times, each repair routed like the
first attempt. Then OutputValidationError lists every attempt's problems (`attempts`, `path`,
`problems`, `text`).

Every attempt goes to `call.notes["structured"]`:

    {"path": "native", "schema": "Invoice",
     "attempts": [{"ok": false, "errors": ["total: …"], "finish_reason": "stop",
                   "prompt_tokens": 40, "completion_tokens": 12}, …]}

The response's usage (and so its recorded cost) is the sum over the attempts; the request left on
the call (and recorded) is the last one sent, repair turns included.

Streams are validated once the stream has ended, and not repaired: chunks have gone out already.
An invalid stream raises OutputValidationError after its last chunk; a valid one leaves its object
in `call.notes["_parsed"]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import OutputValidationError
from ..pipeline import Call, Stage, Target
from ..types import ChatResponse, Chunk, Usage
from .paths import NATIVE, default_mode, enforced, with_repair
from .spec import OutputSpec, Problem, strip_fences

NOTES = "structured"
PARSED = "_parsed"
#: Characters of one problem an attempt entry keeps.
ERROR_CHARS = 300


@dataclass
class Attempt:
    text: str
    finish_reason: str | None
    problems: list[Problem]
    value: Any = None
    usage: Usage | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def note(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": [str(problem)[:ERROR_CHARS] for problem in self.problems],
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.usage.prompt_tokens if self.usage else None,
            "completion_tokens": self.usage.completion_tokens if self.usage else None,
        }


class StructuredStage(Stage):
    def __init__(self, inner: Stage, max_repairs: int = 2,
                 mode_for: Callable[[Target], str] = default_mode) -> None:
        super().__init__(inner)
        self.max_repairs = max_repairs
        self.mode_for = mode_for

    async def complete(self, call: Call) -> ChatResponse:
        if call.output is None:
            return await self.inner.complete(call)
        spec, path = self._begin(call)
        primary = call.target
        attempts: list[Attempt] = []
        while len(attempts) <= self.max_repairs:
            if attempts:
                last = attempts[-1]
                call.request = with_repair(call.request, last.text, last.problems, last.finish_reason)
            call.target = primary
            response, attempt = await self._attempt(call, spec, path)
            attempts.append(attempt)
            _note(call, attempts)
            if response is not None and attempt.ok:
                response.parsed = attempt.value
                response.usage = _total(attempts)
                return response
        raise _failure(call, spec, path, attempts)

    def stream(self, call: Call) -> AsyncIterator[Chunk]:
        if call.output is None:
            return self.inner.stream(call)
        return self._validated_stream(call)

    def _begin(self, call: Call) -> tuple[OutputSpec, str]:
        spec = call.output = OutputSpec.of(call.output)
        path = self.mode_for(call.target)
        call.request = enforced(call.request, spec, path)
        call.notes[NOTES] = {"path": path, "schema": spec.name, "attempts": []}
        return spec, path

    async def _attempt(self, call: Call, spec: OutputSpec, path: str) -> tuple[ChatResponse | None, Attempt]:
        try:
            response = await self.inner.complete(call)
        except OutputValidationError as exc:
            return None, _rejected(exc, spec, path)
        return response, _checked(spec, path, response.content, response.finish_reason, response.usage)

    async def _validated_stream(self, call: Call) -> AsyncIterator[Chunk]:
        spec, path = self._begin(call)
        parts: list[str] = []
        finish_reason: str | None = None
        usage: Usage | None = None
        stream = self.inner.stream(call)
        try:
            async for chunk in stream:
                parts.append(chunk.text)
                finish_reason, usage = chunk.finish_reason or finish_reason, chunk.usage or usage
                yield chunk
        except OutputValidationError as exc:
            attempt = _rejected(exc, spec, path)
        else:
            attempt = _checked(spec, path, "".join(parts), finish_reason, usage)
        finally:
            await _close(stream)
        _note(call, [attempt])
        if not attempt.ok:
            raise _failure(call, spec, path, [attempt])
        call.notes[PARSED] = attempt.value


def _checked(spec: OutputSpec, path: str, text: str, finish_reason: str | None, usage: Usage | None) -> Attempt:
    value, problems = spec.check(strip_fences(text), wrapped=path == NATIVE)
    return Attempt(text, finish_reason, problems, value, usage)


def _rejected(error: OutputValidationError, spec: OutputSpec, path: str) -> Attempt:
    """An attempt the provider itself refused as not matching: its problems, as our schema sees them."""
    text = str(getattr(error, "text", "") or "")
    finish_reason = getattr(error, "finish_reason", None)
    problems = getattr(error, "problems", None) or _checked(spec, path, text, finish_reason, None).problems
    return Attempt(text, finish_reason, problems or [Problem("(root)", str(error), text)])


def _note(call: Call, attempts: list[Attempt]) -> None:
    call.notes[NOTES]["attempts"] = [attempt.note() for attempt in attempts]


def _total(attempts: list[Attempt]) -> Usage:
    usages = [a.usage for a in attempts if a.usage is not None]
    return Usage(
        prompt_tokens=sum(u.prompt_tokens for u in usages),
        completion_tokens=sum(u.completion_tokens for u in usages),
        cached_tokens=sum(u.cached_tokens for u in usages),
        estimated=any(u.estimated for u in usages),
    )


def _failure(call: Call, spec: OutputSpec, path: str, attempts: list[Attempt]) -> OutputValidationError:
    target = call.target
    listing = "; ".join(
        f"attempt {n}: {', '.join(str(p) for p in a.problems)}" for n, a in enumerate(attempts, 1)
    )
    message = (f"{target.alias} ({target.provider.name}/{target.model}) gave no answer matching the schema "
               f"{spec.name!r} in {len(attempts)} attempt{'s' if len(attempts) > 1 else ''} (path: {path}): {listing}")
    notes = [attempt.note() for attempt in attempts]
    last = attempts[-1]
    return OutputValidationError(message, attempts=notes, path=path, problems=last.problems, text=last.text)


async def _close(stream: AsyncIterator[Chunk]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
