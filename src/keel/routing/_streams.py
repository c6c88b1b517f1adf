"""Streams in wrapper stages: a stream is decided by its first chunk.

Before the first chunk a stage may still retry, fall back or time out; after it, chunks go out
to the caller and whatever happens next is theirs to see. Every stream a stage opens is closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from ..pipeline import Call, Stage
from ..types import Chunk

#: A stream opened up to its first chunk: (that chunk, or None for an empty stream; the stream).
Opened = tuple[Chunk | None, AsyncIterator[Chunk]]


async def open_stream(stage: Stage, call: Call) -> Opened:
    """`stage.stream(call)` up to its first chunk. Raises what the stream raised before its
    first chunk, with the stream closed."""
    stream = stage.stream(call)
    return await first_chunk(stream), stream


async def first_chunk(stream: AsyncIterator[Chunk]) -> Chunk | None:
    """The first chunk of `stream` (None when it is empty); `stream` is closed if this raises."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None
    except BaseException:
        await close(stream)
        raise


async def relay(opening: Callable[[], Awaitable[Opened]]) -> AsyncIterator[Chunk]:
    """The stream `opening()` opens (it may retry or fall back to get there), chunk by chunk,
    closed however the caller stops."""
    first, stream = await opening()
    try:
        if first is None:
            return
        yield first
        async for chunk in stream:
            yield chunk
    finally:
        await close(stream)


async def close(stream: AsyncIterator[Chunk]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
