"""The background thread that moves journal batches into the store, off the request path.

It wakes every `interval`, cuts a batch (the recorder rotates its segment), and commits batches in
order: first other processes' leftovers, then its own. When the store fails it keeps everything,
warns once per outage, and retries with backoff; a flush() asks for an attempt right away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StoreError
from .journal import Batch, DeadJournal, append_rejected

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger("keel.tracing")

MAX_BACKOFF = 5.0


class BatchWriter:
    def __init__(
        self,
        store_url: str,
        journal_dir: Path,
        take_batch: Callable[[], Batch | None],
        interval: float,
        on_start: Callable[[], list[DeadJournal]] | None = None,
    ) -> None:
        self._store_url = store_url
        self._journal_dir = journal_dir
        self._take_batch = take_batch
        self._interval = interval
        self._on_start = on_start
        self._cond = threading.Condition()
        self._imports: deque[Batch] = deque()  # other processes' records
        self._own: deque[Batch] = deque()
        self._dead: list[DeadJournal] = []
        self._committed = 0  # the recorder's record count up to which everything is stored
        self._wake = threading.Event()
        self._stopping = False
        self._store: Store | None = None
        self._failing = False
        self._backoff = 0.0
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name="keel-trace-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add_dead(self, journals: list[DeadJournal]) -> int:
        """Queue dead processes' journals for import. Returns how many segments that is."""
        batches = []
        for journal in journals:
            if not journal.segments:
                journal.release()
                continue
            batches.extend(journal.batches())
        with self._cond:
            self._dead.extend(j for j in journals if j.segments)
            self._imports.extend(batches)
        self._wake.set()
        return len(batches)

    def wait(self, seq: int, timeout: float) -> bool:
        """Block until record `seq` and every queued import are committed, or `timeout` passes."""
        with self._cond:
            self._wake.set()  # try now, even while backing off
            return self._cond.wait_for(lambda: self._committed >= seq and not self._imports, timeout)

    @property
    def committed(self) -> int:
        return self._committed

    @property
    def failing(self) -> bool:
        """The last attempt to write failed (the store is down or refuses writes)."""
        return self._failing

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._own and not self._imports

    def stop(self, timeout: float) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._cond:
            for journal in self._dead:
                if not journal.finished:
                    journal.abandon()
            self._dead.clear()

    def forget(self) -> None:
        """In a forked child: the thread did not survive; drop the parent's locks."""
        for journal in self._dead:
            if not journal.finished:
                journal.abandon()

    def _run(self) -> None:
        if self._on_start is not None:
            self._safely(lambda: self.add_dead(self._on_start()))  # type: ignore[misc]
        while not self._stopping:
            asked = self._wake.wait(self._interval)
            self._wake.clear()
            if not self._stopping and (asked or time.monotonic() >= self._retry_at):
                self._safely(self._cycle)
        self._close_store()

    def _safely(self, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as exc:  # a bug must not kill the thread: keep the batches, retry later
            self._failed(exc)

    def _cycle(self) -> None:
        batch = self._take_batch()
        if batch is not None:
            with self._cond:
                self._own.append(batch)
        for queue in (self._imports, self._own):
            while True:
                with self._cond:
                    if not queue:
                        break
                    batch = queue[0]
                if not self._commit(batch):
                    return
                batch.committed()  # before waking flush(): its journal files are gone by then
                with self._cond:
                    queue.popleft()
                    if batch.seq is not None:
                        self._committed = batch.seq
                    self._cond.notify_all()

    def _commit(self, batch: Batch) -> bool:
        try:
            self._write(batch.load())
        except Exception as exc:
            batch.forget_data()
            self._failed(exc)
            return False
        if self._failing:
            log.warning("the trace store at %s is reachable again: writing the spooled traces", self._store_url)
            self._failing = False
        self._backoff = 0.0
        return True

    def _write(self, jsonl: bytes | bytearray) -> None:
        if not jsonl:
            return
        if self._store is None:
            from ..store import open_store  # here: `import keel` must not import SQLAlchemy

            self._store = open_store(self._store_url)
        try:
            self._store.insert_trace_jsonl(jsonl)
        except StoreError as exc:
            if getattr(exc, "retryable", True):
                raise
            self._write_one_by_one(self._store, [line for line in jsonl.split(b"\n") if line])

    def _write_one_by_one(self, store: Store, lines: list[bytes]) -> None:
        """Find the records the database refuses, keep them aside, and store the others."""
        rejected, reason = [], None
        for line in lines:
            try:
                store.insert_trace_jsonl(line)
            except StoreError as exc:
                if getattr(exc, "retryable", True):
                    raise
                rejected.append(bytes(line))
                reason = exc
        if not rejected:
            return
        try:
            append_rejected(self._journal_dir, rejected)
            log.error("the trace store refused %d record(s) (%s); they are kept in %s",
                      len(rejected), reason, self._journal_dir / "rejected.jsonl")
        except OSError as exc:
            log.error("the trace store refused %d record(s) (%s) and they could not be kept: %s",
                      len(rejected), reason, exc)

    def _failed(self, exc: Exception) -> None:
        self._close_store()  # reopen on retry: a pool or a read-only SQLite handle may be stale
        self._backoff = min(max(self._backoff * 2, 0.5), MAX_BACKOFF)
        self._retry_at = time.monotonic() + self._backoff
        if not self._failing:
            self._failing = True
            log.warning("cannot write traces (%s): they are kept in %s and written when the store is back",
                        exc, self._journal_dir, exc_info=not isinstance(exc, StoreError))

    def _close_store(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            try:
                store.close()
            except Exception:  # closing a broken pool must not hide the real failure
                log.debug("closing the trace store failed", exc_info=True)
