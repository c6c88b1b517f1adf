"""Fallbacks: when the call's model fails, try the model's `fallbacks`, in order.

`call.target` is set to the target being tried, so the trace names whoever answered; the notes
get `answered_by` (that alias) and `fallback_failures` (why each earlier one failed). When every
target failed: `AllProvidersFailed`, an ExceptionGroup of every cause, naming each model.

Which errors fall back (another target may succeed where this one failed):
  - every ProviderError except InvalidRequest: the upstream is down, overloaded, rate-limited,
    rejecting this provider's key (401/403), or its circuit is open;
  - MissingCredentials: this provider's key is not set, another's may be.
Which propagate at once: InvalidRequest (the request itself is wrong: every upstream would say
so), other configuration errors, and anything that is not a Keel error (a bug).

Fallback names are resolved before the first try, so a name that does not resolve is a
ConfigError on every call, not only on the day the primary fails. Only the called model's own
fallbacks are tried (not theirs), and an upstream model only once, whatever names lead to it.
Once the shared deadline has passed, no further target is tried.
A stream falls back only until its first chunk went out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from ..errors import AllProvidersFailed, ConfigError, InvalidRequest, KeelError, MissingCredentials, ProviderError
from ..pipeline import Call, Stage, Target
from ..types import ChatResponse, Chunk
from ._notes import deadline_passed, describe_error
from ._streams import open_stream, relay

T = TypeVar("T")


def falls_back_on(error: Exception) -> bool:
    if isinstance(error, InvalidRequest):
        return False
    return isinstance(error, (ProviderError, MissingCredentials))


class FallbackStage(Stage):
    def __init__(self, inner: Stage, resolve: Callable[[str], Target],
                 fallbacks_for: Callable[[Target], list[str]]) -> None:
        super().__init__(inner)
        self.resolve = resolve
        self.fallbacks_for = fallbacks_for

    async def complete(self, call: Call) -> ChatResponse:
        if not self.fallbacks_for(call.target):
            return await self.inner.complete(call)
        return await self._first_success(call, lambda: self.inner.complete(call))

    def stream(self, call: Call) -> AsyncIterator[Chunk]:
        return relay(lambda: self._first_success(call, lambda: open_stream(self.inner, call)))

    def targets(self, primary: Target) -> list[Target]:
        """The primary, then each fallback, resolved now; an upstream model already listed is skipped."""
        targets = {(primary.provider.name, primary.model): primary}
        for name in self.fallbacks_for(primary):
            try:
                target = self.resolve(name)
            except KeelError as exc:
                raise ConfigError(f"Model {primary.alias!r} lists the fallback {name!r}, which cannot be used: "
                                  f"{exc}", model=primary.alias, fallback=name) from exc
            targets.setdefault((target.provider.name, target.model), target)
        return list(targets.values())

    async def _first_success(self, call: Call, attempt: Callable[[], Awaitable[T]]) -> T:
        targets = self.targets(call.target)
        failures: list[tuple[Target, Exception]] = []
        for target in targets:
            if failures and deadline_passed(call):
                break
            call.target = target
            try:
                result = await attempt()
            except Exception as exc:
                if len(targets) == 1 or not falls_back_on(exc):
                    raise
                failures.append((target, exc))
                _note_failure(call, target, exc)
                continue
            call.notes["answered_by"] = target.alias
            return result
        call.target = targets[0]
        raise _all_failed(targets, failures)


def _note_failure(call: Call, target: Target, error: Exception) -> None:
    entry = {"model": target.alias, "provider": target.provider.name, **describe_error(error)}
    call.notes.setdefault("fallback_failures", []).append(entry)


def _all_failed(targets: list[Target], failures: list[tuple[Target, Exception]]) -> AllProvidersFailed:
    tried = ", ".join(f"{t.alias} ({t.provider.name}/{t.model}) → {type(e).__name__}" for t, e in failures)
    message = f"Every model failed: {tried}"
    untried = [t.alias for t in targets[len(failures):]]
    if untried:
        message += f"; not tried, the deadline passed: {', '.join(untried)}"
    return AllProvidersFailed(message, [error for _, error in failures])
