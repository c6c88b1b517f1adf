"""Store round trips shared by concurrent calls. The store is synchronous: each trip is a worker
thread and a transaction, costly next to the statement itself, so calls made together share one.

    Batcher      reads: the first request starts a trip at once; those made meanwhile go together
                 on the next trip. Futures belong to a loop: one Batcher per event loop.
    WriteBehind  writes: kept here (readable at once, so a backend reads its own writes) and
                 written together at most `delay` seconds later, off the caller's path. `flush()`
                 writes them now; so does the end of the event loop (asyncio.run cancels the
                 waiting task, which writes before it ends). A failed write is logged and its
                 entries dropped: the cache is an optimisation.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("keel.cache")

T = TypeVar("T")
R = TypeVar("R")
#: (key, value, expires_at in epoch seconds)
Entry = tuple[str, bytes, float]


class Batcher(Generic[T, R]):
    """Requests run in a worker thread in groups: `run(items)` returns one result per item. A
    failed trip fails each of its requests."""

    def __init__(self, run: Callable[[list[T]], list[R]]) -> None:
        self._run = run
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._trips())
        return await future

    async def _trips(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                results = await asyncio.to_thread(self._run, [item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch + self._queue:
                    future.cancel()
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


class WriteBehind:
    """Entries waiting to be written by `write(entries)` (in a worker thread), newest per key."""

    def __init__(self, write: Callable[[list[Entry]], None], delay: float, name: str = "cache") -> None:
        self._write, self.delay, self.name = write, delay, name
        self._pending: dict[str, tuple[bytes, float]] = {}
        self._writing: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()  # the dicts (loops of several threads may use one backend)
        self._write_lock = threading.Lock()  # one write at a time: a key's later value lands last
        self._task: asyncio.Task[None] | None = None

    def put(self, key: str, value: bytes, expires_at: float) -> None:
        with self._lock:
            self._pending[key] = (value, expires_at)
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._write_later())

    def get(self, key: str) -> tuple[bytes, float] | None:
        """The unwritten (value, expires_at) under `key`, if any."""
        with self._lock:
            return self._pending.get(key) or self._writing.get(key)

    async def flush(self) -> None:
        """Write every entry put so far, now."""
        task = self._task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(self._write_pending)

    async def _write_later(self) -> None:
        try:
            await asyncio.sleep(self.delay)
        finally:  # cancelled too: by flush(), or by the end of the loop
            await asyncio.to_thread(self._write_pending)

    def _write_pending(self) -> None:
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
                self._writing = batch
            try:
                if batch:
                    self._write([(key, value, expires_at) for key, (value, expires_at) in batch.items()])
            except Exception as exc:
                log.warning("%s: could not write %d entries (%s); they are dropped", self.name, len(batch), exc)
            finally:
                with self._lock:
                    self._writing = {}
