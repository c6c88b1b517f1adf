"""The journal: the recorder's spool on disk, so that no answered request loses its trace.

    <journal_dir>/
      <pid>-<random>/        one directory per live process
        lock                 flock'ed for the process lifetime: a lock that can be taken means dead
        00000001.jsonl       segments of JSON lines, one trace each; a new one per committed batch
      rejected.jsonl         lines the store refused as data (kept for inspection)

A segment is deleted only once every record in it is committed. A process that dies leaves its
directory behind; the next recorder that starts claims it (takes its lock) and imports it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .segment import Segment

log = logging.getLogger("keel.tracing")

LOCK_NAME = "lock"
REJECTED_NAME = "rejected.jsonl"
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


@dataclass
class Batch:
    """Records written (or to write) in one go; `path` is deleted once they are committed.

    `data` (JSON lines) is None when the records are read back from `path`: a dead process's
    segment, or ours after a failed attempt (the file holds them, memory need not).
    """

    data: bytes | bytearray | None
    path: Path | None
    #: This recorder's record count when the batch was cut; None for another process's records.
    seq: int | None = None
    #: Every line reached the file (no write error), so memory may drop them.
    on_disk: bool = True
    on_done: Callable[[], None] | None = field(default=None, repr=False)

    def load(self) -> bytes | bytearray:
        if self.data is not None:
            return self.data
        return read_segment(self.path) if self.path is not None else b""

    def committed(self) -> None:
        if self.path is not None:
            _unlink(self.path)
        if self.on_done is not None:
            self.on_done()

    def forget_data(self) -> None:
        if self.on_disk and self.path is not None:
            self.data = None


class Journal:
    """This process's journal directory, locked until `close`."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        # Built under a hidden name and renamed once locked, so nobody can claim it half-made.
        building = root / f".{name}"
        building.mkdir(mode=0o700)  # traces hold prompts and answers: private to this user
        self._lock_fd = os.open(building / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = root / name
        os.rename(building, self.path)
        self._segments = 0

    def new_segment(self) -> Segment:
        self._segments += 1
        return Segment(self.path / f"{self._segments:08d}.jsonl")

    def close(self, *, remove: bool) -> None:
        """Release the lock; with `remove`, delete the directory (it must hold only empty segments)."""
        try:
            if remove:
                for segment in self.path.glob("*.jsonl"):
                    if segment.stat().st_size == 0:
                        segment.unlink()
                _unlink(self.path / LOCK_NAME)
                self.path.rmdir()
        except OSError as exc:
            log.warning("could not remove the trace journal %s: %s", self.path, exc)
        finally:
            os.close(self._lock_fd)

    def forget(self) -> None:
        """In a forked child: drop the parent's lock descriptor (the parent keeps the lock)."""
        os.close(self._lock_fd)


class DeadJournal:
    """A dead process's journal directory, claimed by holding its lock while importing it."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd
        self.segments = sorted(path.glob("*.jsonl"))
        self._remaining = len(self.segments)

    def batches(self) -> list[Batch]:
        return [Batch(None, segment, on_done=self._segment_done) for segment in self.segments]

    @property
    def finished(self) -> bool:
        return self._remaining == 0

    def release(self) -> None:
        """Delete what is left (only called when every segment is imported) and unlock."""
        if self._lock_fd is None:
            return  # abandoned meanwhile: someone else will finish the job
        try:
            _unlink(self.path / LOCK_NAME)
            self.path.rmdir()
        except OSError as exc:
            log.warning("could not remove the trace journal %s: %s", self.path, exc)
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Unlock without deleting, so that a later recorder imports what is left."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def _segment_done(self) -> None:
        self._remaining -= 1
        if self._remaining == 0:
            self.release()


def claim_dead(root: Path, own: Path | None) -> list[DeadJournal]:
    """Lock and return the journal directories under `root` whose process is gone."""
    claimed = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path == own or path.name.startswith(".") or not path.is_dir():
            continue
        try:
            fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            continue  # removed meanwhile by another claimer
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # alive, or being imported by someone else
            continue
        claimed.append(DeadJournal(path, fd))
    return claimed


def read_segment(path: Path) -> bytes:
    """The complete JSON-object lines of a segment; a torn or corrupt line is skipped with a warning.
    Zeros at the end (space reserved by a process that died before cutting the file) are not lines."""
    try:
        data = path.read_bytes().rstrip(b"\0")
    except FileNotFoundError:
        return b""  # imported and deleted by another claimer
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail:
        log.warning("skipping a torn last line (%d bytes) in the trace journal %s", len(tail), path)
    good = [line for line in lines if line and _is_object(line)]
    skipped = sum(1 for line in lines if line) - len(good)
    if skipped:
        log.warning("skipping %d corrupt line(s) in the trace journal %s", skipped, path)
    return b"".join(line + b"\n" for line in good)


def append_rejected(root: Path, lines: list[bytes]) -> None:
    """Keep lines the store refused, for a human to look at."""
    fd = os.open(root / REJECTED_NAME, _APPEND, 0o600)
    try:
        os.write(fd, b"".join(line + b"\n" for line in lines))
    finally:
        os.close(fd)


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
