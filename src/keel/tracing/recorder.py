"""The recorder: traces leave the request path as one copy into the journal and reach the store in batches.

`record()` serialises the trace, appends the line to this process's journal segment (a shared
mapping of the file, see segment.py; no fsync: once the kernel has it, a SIGKILL cannot lose it)
and hands it to the writer thread. The writer commits batches, deleting a segment once all its records are stored;
what a dead process left behind is imported by the next recorder on the same journal directory.
Nothing here raises into the caller: failures are logged, and records wait in the journal.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from .journal import Batch, DeadJournal, Journal, claim_dead
from .segment import Segment
from .writer import BatchWriter

log = logging.getLogger("keel.tracing")

_NEWLINE = orjson.OPT_APPEND_NEWLINE
_EXIT_TIMEOUT = 5.0  # at interpreter exit: what is not written by then stays in the journal
_EXIT_TIMEOUT_FAILING = 0.5


class Recorder:
    """Stores trace records without blocking, or failing, the code that makes them.

    Thread-safe. The journal directory and the writer thread are created on the first record
    (or `recover()`); the store is opened by the writer thread, so a dead store never delays a
    request.
    """

    def __init__(self, store_url: str, journal_dir: Path, *, flush_interval: float = 0.2) -> None:
        self.store_url = store_url
        self.journal_dir = Path(journal_dir)
        self.flush_interval = flush_interval
        self._lock = threading.Lock()
        self._clear()
        os.register_at_fork(after_in_child=partial(_forget_parent, weakref.ref(self)))

    def record(self, record: dict[str, Any]) -> None:
        """Keep `record` (the hot path: one serialisation and one write). Never raises."""
        try:
            line = orjson.dumps(record, default=str, option=_NEWLINE)
        except Exception as exc:  # not the record itself in the log: it may hold personal data
            trace_id = record.get("id") if isinstance(record, dict) else None
            log.error("dropping trace %s: it cannot be serialised (%s)", trace_id, exc)
            return
        try:
            with self._lock:
                if self._writer is None:
                    self._start(recover=True)
                if self._file is not None:
                    self._append(self._file, line)
                self._pending += line
                self._seq += 1
        except Exception:
            log.exception("the trace recorder failed to keep a record")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is in the store. False if `timeout` passed first."""
        with self._lock:
            writer, seq = self._writer, self._seq
        return True if writer is None else writer.wait(seq, timeout)

    @property
    def lag(self) -> int:
        """Records made by this recorder that are not in the store yet (for metrics and health)."""
        with self._lock:
            writer, seq = self._writer, self._seq
        return 0 if writer is None else seq - writer.committed

    def recover(self) -> int:
        """Import what dead processes left in the journal directory. Returns the segments queued;
        a following `flush()` waits for them too."""
        with self._lock:
            if self._writer is None:
                self._start(recover=False)
            writer, own = self._writer, self._journal.path if self._journal else None
        assert writer is not None
        return writer.add_dead(claim_dead(self.journal_dir, own))

    def close(self, timeout: float = 10.0) -> bool:
        """Flush, stop the writer, release the journal. True if everything reached the store;
        otherwise what is left stays in the journal for the next recorder."""
        with self._lock:
            writer = self._writer
        if writer is None:
            return True
        done = self.flush(timeout)
        writer.stop(timeout)
        with self._lock:
            done = done and not self._pending and writer.idle
            if self._file is not None:
                self._file.close()
            if self._journal is not None:
                self._journal.close(remove=done)
            self._clear()
        atexit.unregister(self._close_at_exit)
        return done

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _append(self, segment: Segment, line: bytes) -> None:
        try:
            segment.append(line)
        except OSError as exc:
            if self._on_disk:
                log.error("cannot append to the trace journal %s (%s): records are kept in memory until "
                          "written, and lost if the process dies first", segment.path, exc)
            self._on_disk = False

    def _start(self, *, recover: bool) -> None:
        """Create the journal and the writer thread. Called with the lock held."""
        if self._journal is None:
            try:
                self._journal = Journal(self.journal_dir)
                self._file = self._journal.new_segment()
            except OSError as exc:
                log.error("cannot create the trace journal under %s (%s): traces are kept in memory "
                          "until written, and lost if the process dies first", self.journal_dir, exc)
                self._on_disk = False
        on_start = self._claim_dead if recover else None
        writer = BatchWriter(self.store_url, self.journal_dir, self._take_batch, self.flush_interval, on_start)
        writer.start()
        self._writer = writer
        atexit.register(self._close_at_exit)

    def _take_batch(self) -> Batch | None:
        """Cut the records since the last batch and start a new segment (writer thread)."""
        with self._lock:
            if not self._pending:
                return None
            batch = Batch(self._pending, self._file.path if self._file else None, self._seq, self._on_disk)
            self._pending = bytearray()
            old = None
            if self._journal is not None:
                try:
                    segment = self._journal.new_segment()
                except OSError as exc:
                    # Keep appending to the current segment; a later batch deletes it.
                    log.warning("cannot start a new trace journal segment: %s", exc)
                    batch.path = None
                else:
                    old, self._file, self._on_disk = self._file, segment, True
        if old is not None:
            old.close()
        return batch

    def _claim_dead(self) -> list[DeadJournal]:
        return claim_dead(self.journal_dir, self._journal.path if self._journal else None)

    def _close_at_exit(self) -> None:
        # With the store down, do not hold up the exit: the journal keeps the records for next time.
        writer = self._writer
        self.close(_EXIT_TIMEOUT_FAILING if writer is not None and writer.failing else _EXIT_TIMEOUT)

    def _clear(self) -> None:
        self._journal: Journal | None = None
        self._file: Segment | None = None  # the segment being appended to
        self._on_disk = True  # every line of the current segment reached the file
        self._pending = bytearray()  # the lines since the last batch: cheaper than a list of them
        self._seq = 0
        self._writer: BatchWriter | None = None


def _forget_parent(recorder_ref: weakref.ref[Recorder]) -> None:
    """After fork, in the child: the parent's journal and writer are the parent's. Start afresh."""
    recorder = recorder_ref()
    if recorder is None or recorder._writer is None:
        return
    recorder._lock = threading.Lock()  # it may have been held by a parent thread at fork time
    if recorder._file is not None:
        recorder._file.forget()
    if recorder._journal is not None:
        recorder._journal.forget()
    recorder._writer.forget()
    recorder._clear()
