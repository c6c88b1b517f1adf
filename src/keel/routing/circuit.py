"""Circuit breakers: stop calling an upstream that keeps failing, and probe it now and then.

One breaker per (provider name, upstream model), kept in the `Breakers` registry of one client:

    closed ──(circuit_failures failures within circuit_window s)──▶ open
    open ──(circuit_cooldown s later, the next call is let through as the one probe)──▶ half-open
    half-open ──probe answered──▶ closed          half-open ──probe failed──▶ open again

While open, and while the probe is in flight, calls fail at once with `CircuitOpen`, which is not
retryable (the retry stage does not spin on it) but is worth falling back on. Only errors about
the upstream's health (`retryable`: 429, 5xx, timeouts, connection and malformed-answer errors)
count as failures; an upstream that rejects a request (400, 401) is answering, so it counts as
healthy. A call cancelled before any answer says nothing either way.

State is plain data touched only from the event loop (no awaits between check and update).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from enum import Enum

from ..errors import CircuitOpen, ProviderError
from ..pipeline import Call, Stage, Target
from ..settings import RoutingSettings
from ..types import ChatResponse, Chunk
from ._streams import close



class Verdict(Enum):
    HEALTHY = "healthy"
    FAILED = "failed"
    UNKNOWN = "unknown"


def verdict(error: BaseException | None, answered: bool = False) -> Verdict:
    """What an outcome says about the upstream's health; `answered`: some of a stream arrived."""
    if error is None:
        return Verdict.HEALTHY
    if getattr(error, "retryable", False):
        return Verdict.FAILED
    if isinstance(error, ProviderError) or answered:
        return Verdict.HEALTHY
    return Verdict.UNKNOWN  # cancelled, a missing key, a bug: nothing learnt about the upstream


class Breaker:
    def __init__(self, provider: str, model: str, routing: RoutingSettings) -> None:
        self.provider = provider
        self.model = model
        self.routing = routing
        self.failures: deque[float] = deque()
        self.opened_at: float | None = None
        self.reason = ""
        self.probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.probing else "open"

    def admit(self) -> bool:
        """Let a call through (True if it is the half-open probe), or raise CircuitOpen."""
        if self.opened_at is None:
            return False
        wait = self.opened_at + self.routing.circuit_cooldown - time.monotonic()
        if wait > 0 or self.probing:
            raise self._refusal(wait)
        self.probing = True
        return True

    def settle(self, outcome: Verdict, probe: bool) -> None:
        """Take in the outcome of a call this breaker admitted."""
        if probe:
            self.probing = False
            if outcome is Verdict.HEALTHY:
                self.opened_at, self.reason = None, ""
                self.failures.clear()
            elif outcome is Verdict.FAILED:
                self._open("its probe failed")
        elif outcome is Verdict.FAILED and self.opened_at is None:
            self._count_failure()

    def _count_failure(self) -> None:
        now = time.monotonic()
        self.failures.append(now)
        while self.failures and self.failures[0] <= now - self.routing.circuit_window:
            self.failures.popleft()
        if len(self.failures) >= self.routing.circuit_failures:
            self._open(f"{len(self.failures)} failures within {self.routing.circuit_window:g}s")

    def _open(self, reason: str) -> None:
        self.opened_at, self.reason = time.monotonic(), reason
        self.failures.clear()

    def _refusal(self, wait: float) -> CircuitOpen:
        where = f"{self.provider}/{self.model}"
        if self.probing:
            message = f"circuit open for {where} after {self.reason}; a probe request is in flight"
        else:
            message = f"circuit open for {where} after {self.reason}; next probe in {wait:.1f}s"
        return CircuitOpen(message, provider=self.provider, retry_after=max(wait, 0.0))


class Breakers:
    """The breakers of one client, created on first use."""

    def __init__(self, routing: RoutingSettings) -> None:
        self.routing = routing
        self._breakers: dict[tuple[str, str], Breaker] = {}

    def __getitem__(self, target: Target) -> Breaker:
        key = (target.provider.name, target.model)
        if key not in self._breakers:
            self._breakers[key] = Breaker(*key, self.routing)
        return self._breakers[key]

    def states(self) -> dict[str, str]:
        """"provider/model" -> closed | open | half-open, for dashboards and tests."""
        return {f"{p}/{m}": breaker.state for (p, m), breaker in self._breakers.items()}


class CircuitBreakerStage(Stage):
    def __init__(self, inner: Stage, routing: RoutingSettings, breakers: Breakers | None = None) -> None:
        super().__init__(inner)
        self.breakers = breakers or Breakers(routing)

    async def complete(self, call: Call) -> ChatResponse:
        breaker = self.breakers[call.target]
        probe = breaker.admit()
        try:
            response = await self.inner.complete(call)
        except BaseException as exc:
            breaker.settle(verdict(exc), probe)
            raise
        breaker.settle(Verdict.HEALTHY, probe)
        return response

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        breaker = self.breakers[call.target]
        probe = breaker.admit()
        answered = False
        stream = self.inner.stream(call)
        try:
            async for chunk in stream:
                answered = True
                yield chunk
        except BaseException as exc:
            breaker.settle(verdict(exc, answered), probe)
            raise
        finally:
            await close(stream)
        breaker.settle(Verdict.HEALTHY, probe)
