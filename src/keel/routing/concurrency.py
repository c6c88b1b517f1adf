"""At most `max_concurrency` calls in flight per provider (`[providers.X] max_concurrency`).

Calls over the limit wait for a slot, in arrival order; a stream holds its slot until it ends or
is closed. Slots are asyncio semaphores, one per provider and event loop, created on first use
(a semaphore cannot be shared between loops).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, nullcontext
from weakref import WeakKeyDictionary

from ..pipeline import Call, Stage
from ..types import ChatResponse, Chunk
from ._streams import close


class ConcurrencyLimitStage(Stage):
    def __init__(self, inner: Stage) -> None:
        super().__init__(inner)
        self._slots: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = WeakKeyDictionary()

    async def complete(self, call: Call) -> ChatResponse:
        async with self.slot(call):
            return await self.inner.complete(call)

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        async with self.slot(call):
            stream = self.inner.stream(call)
            try:
                async for chunk in stream:
                    yield chunk
            finally:
                await close(stream)

    def slot(self, call: Call) -> AbstractAsyncContextManager[object]:
        """The semaphore of the call's provider in this loop; a no-op without a limit."""
        provider = call.target.provider
        limit = getattr(provider.settings, "max_concurrency", None)
        if limit is None:
            return nullcontext()
        per_loop = self._slots.setdefault(asyncio.get_running_loop(), {})
        if provider.name not in per_loop:
            per_loop[provider.name] = asyncio.Semaphore(limit)
        return per_loop[provider.name]
