"""A time limit per attempt (`routing.attempt_timeout`), on top of the provider's own timeout.

It sits inside the circuit breaker, so an upstream that hangs until this limit counts against its
circuit like any other timeout. For a stream the limit is on the first chunk; after that the
provider's per-chunk timeout applies, so a long answer that keeps coming is not cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from ..errors import ProviderTimeout
from ..pipeline import Call, Stage
from ..settings import RoutingSettings
from ..types import ChatResponse, Chunk
from ._streams import open_stream, relay

T = TypeVar("T")


class AttemptTimeoutStage(Stage):
    def __init__(self, inner: Stage, routing: RoutingSettings) -> None:
        super().__init__(inner)
        self.limit = routing.attempt_timeout

    async def complete(self, call: Call) -> ChatResponse:
        return await self._limited(call, lambda: self.inner.complete(call))

    def stream(self, call: Call) -> AsyncIterator[Chunk]:
        return relay(lambda: self._limited(call, lambda: open_stream(self.inner, call)))

    async def _limited(self, call: Call, attempt: Callable[[], Awaitable[T]]) -> T:
        scope = asyncio.timeout(self.limit)
        try:
            async with scope:
                return await attempt()
        except TimeoutError:
            if not scope.expired():
                raise
            target = call.target
            raise ProviderTimeout(
                f"{target.provider.name}/{target.model}: no answer within {self.limit:g}s (routing.attempt_timeout).",
                provider=target.provider.name,
            ) from None
