"""Driving a provider from a sync test: one event loop per call, sessions closed before it ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def run_closing(provider: Any, action: Callable[[Any], Awaitable[T]]) -> T:
    """`asyncio.run(action(provider))`, then `provider.aclose()` on the same loop (no unclosed sessions)."""

    async def main() -> T:
        try:
            return await action(provider)
        finally:
            await provider.aclose()

    return asyncio.run(main())


async def collect(stream: AsyncIterator[T]) -> list[T]:
    """Every item of an async iterator, e.g. `run_closing(p, lambda p: collect(p.stream(req, "m")))`."""
    return [item async for item in stream]
