"""Retries with exponential backoff and full jitter, within the call's deadline.

A failed attempt is retried when its error says so (`retryable`: 429, 5xx, connection errors,
timeouts, malformed answers; never 400, 401 or a missing key), at most `routing.retries` times.
The wait before retry n (0-based) is uniform(0, min(backoff_max, backoff_base * 2**n)), and at
least the upstream's Retry-After. A wait that would end past the deadline is not started: the
last error is raised at once. Each attempt is bounded by what is left of the deadline, which is
kept in `call.notes` and so shared with the fallbacks tried after this target.

A stream is retried only until its first chunk went out; the deadline bounds the wait for that
first chunk, not a stream that is delivering.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from ..pipeline import Call, Stage
from ..settings import RoutingSettings
from ..types import ChatResponse, Chunk
from ._notes import deadline_error, log_attempt, start_clock, time_left
from ._streams import open_stream, relay

T = TypeVar("T")


class RetryStage(Stage):
    def __init__(self, inner: Stage, routing: RoutingSettings) -> None:
        super().__init__(inner)
        self.routing = routing

    async def complete(self, call: Call) -> ChatResponse:
        start_clock(call, self.routing.deadline)
        if not _deadline_cannot_pass(call):
            return await self._retrying(call, lambda: self.inner.complete(call))
        began = time.monotonic()  # the happy path, without the retry loop's frames (measured)
        try:
            response = await self.inner.complete(call)
            if "attempts" in call.notes:  # earlier targets failed: this answer completes the story
                log_attempt(call, began)
            return response
        except Exception as exc:
            delay = self._next_delay(call, 0, began, exc)
            if delay is None:
                raise
        await asyncio.sleep(delay)
        return await self._retrying(call, lambda: self.inner.complete(call), first=1)

    def stream(self, call: Call) -> AsyncIterator[Chunk]:
        return relay(lambda: self._retrying(call, lambda: open_stream(self.inner, call)))

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform between 0 and the capped exponential delay of this attempt."""
        ceiling = min(self.routing.backoff_max, self.routing.backoff_base * 2**attempt)
        return random.uniform(0, ceiling)

    async def _retrying(self, call: Call, attempt_once: Callable[[], Awaitable[T]], first: int = 0) -> T:
        start_clock(call, self.routing.deadline)
        attempt = first
        while True:
            began = time.monotonic()
            try:
                if _deadline_cannot_pass(call):
                    result = await attempt_once()
                else:
                    async with _within_deadline(call):
                        result = await attempt_once()
            except Exception as exc:
                delay = self._next_delay(call, attempt, began, exc)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if "attempts" in call.notes:  # a clean first answer needs no explaining in the trace
                log_attempt(call, began)
            return result

    def _next_delay(self, call: Call, attempt: int, began: float, error: Exception) -> float | None:
        """Log the failed attempt; the seconds to wait before the next one, or None to give up."""
        delay, decision = self._plan(call, attempt, error)
        log_attempt(call, began, error, delay=delay, decision=decision)
        return delay

    def _plan(self, call: Call, attempt: int, error: Exception) -> tuple[float | None, str]:
        if not getattr(error, "retryable", False):
            return None, "stop: not retryable"
        if attempt >= self.routing.retries:
            return None, f"stop: all {self.routing.retries} retries used"
        delay = self.backoff(attempt)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, retry_after)
        left = time_left(call)
        if left is not None and delay >= left:
            return None, f"stop: waiting {delay:.3g}s would pass the deadline ({max(left, 0):.3g}s left)"
        return delay, "retry"


def _deadline_cannot_pass(call: Call) -> bool:
    """True when the provider's own timeout ends this attempt before the call's deadline could
    (the common case): then no timer is needed, which saves its cost on every request."""
    left = time_left(call)
    return left is None or left > call.target.provider.settings.timeout + 1


@asynccontextmanager
async def _within_deadline(call: Call) -> AsyncIterator[None]:
    """Bound the body by what is left of the call's deadline (ProviderTimeout when it passes)."""
    left = time_left(call)
    if left is not None and left <= 0:
        raise deadline_error(call, "before this attempt could start")
    scope = asyncio.timeout(left)
    try:
        async with scope:
            yield
    except TimeoutError:
        if not scope.expired():
            raise
        raise deadline_error(call, "during this attempt") from None
