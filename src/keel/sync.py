"""`Client`: the synchronous face of `AsyncClient`, running it on a private event-loop thread.

One implementation of the pipeline; the sync API only carries calls across to that loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

from .client import AsyncClient, MessagesLike, PromptHandle
from .settings import Settings
from .types import ChatRequest, ChatResponse, Chunk

T = TypeVar("T")


class Client:
    """Synchronous client: `Client().complete("Hello")`. Use as a context manager or call close()."""

    def __init__(self, settings: Settings | None = None, *, record: bool = True) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="keel-client", daemon=True)
        self._thread.start()
        self._async = self._run(_make(settings, record))

    @property
    def aio(self) -> AsyncClient:
        """The underlying AsyncClient (its calls must run on this client's loop)."""
        return self._async

    @property
    def settings(self) -> Settings:
        return self._async.settings

    def complete(self, messages: MessagesLike | ChatRequest, *, model: str | None = None, **options: Any) -> ChatResponse:
        return self._run(self._async.complete(messages, model=model, **options))

    def stream(self, messages: MessagesLike | ChatRequest, *, model: str | None = None, **options: Any) -> Iterator[Chunk]:
        return self._iterate(self._async.stream(messages, model=model, **options))

    def prompt(self, name: str, label: str | None = None) -> "SyncPromptHandle":
        """A prompt file called by name: `client.prompt("summarize").run(text=...)`."""
        return SyncPromptHandle(self, self._async.prompt(name, label))

    def provider(self, name: str) -> Any:
        return self._async.provider(name)

    def flush(self, timeout: float = 10.0) -> bool:
        return self._async.flush(timeout)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._async.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            self._run(agen.aclose())  # type: ignore[attr-defined]


class SyncPromptHandle:
    def __init__(self, client: Client, handle: PromptHandle) -> None:
        self._client, self._handle = client, handle

    def run(self, *, options: dict[str, Any] | None = None, **variables: Any) -> ChatResponse:
        return self._client._run(self._handle.run(options=options, **variables))

    def stream(self, *, options: dict[str, Any] | None = None, **variables: Any) -> Iterator[Chunk]:
        return self._client._iterate(self._handle.stream(options=options, **variables))


async def _make(settings: Settings | None, record: bool) -> AsyncClient:
    return AsyncClient(settings, record=record)
