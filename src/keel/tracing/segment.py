"""One journal segment being written: records appended by copying them into a shared mapping.

An append is a copy into the page cache: no system call per record, so the request path keeps
the interpreter lock instead of handing it to the writer thread and waiting to get it back (that
handoff, not the write itself, was most of what a trace cost under load). The pages belong to
the kernel as soon as they are written, so a record survives the process being killed at once
(SIGKILL), exactly as with write(2) and no fsync.

Space is reserved ahead with posix_fallocate, a chunk at a time, so that a full disk is an
error here rather than a SIGBUS when a page is first touched. Where a file cannot be mapped or
its space cannot be reserved, appends fall back to pwrite(2). On `close` the file is cut to what
was written; a segment left by a dead process may end in zeros (the reserved, unwritten space),
which `journal.read_segment` drops.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

#: The first reservation; each further one doubles the mapping.
FIRST_CHUNK = 256 * 1024


class Segment:
    """A segment file open for appending (not thread-safe: the recorder holds its lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        #: Bytes of records in the file.
        self.size = 0
        self._map: mmap.mmap | None = None
        self._mapping = True  # False once mapping failed: pwrite from then on

    def append(self, line: bytes) -> None:
        """Add `line` after the records so far; raises OSError when it could not be written whole."""
        end = self.size + len(line)
        if self._mapping and (self._map is not None and end <= len(self._map) or self._grow(end)):
            self._map[self.size:end] = line  # type: ignore[index]
        elif os.pwrite(self.fd, line, self.size) != len(line):
            raise OSError(f"short write to {self.path}")
        self.size = end

    def close(self) -> None:
        """Unmap, and cut the file to its records."""
        self._unmap()
        try:
            os.ftruncate(self.fd, self.size)
        finally:
            os.close(self.fd)

    def forget(self) -> None:
        """In a forked child: let go of the parent's segment without touching the file."""
        self._unmap()
        os.close(self.fd)

    def _grow(self, needed: int) -> bool:
        capacity = len(self._map) if self._map is not None else FIRST_CHUNK // 2
        while capacity < needed:
            capacity *= 2
        try:
            os.posix_fallocate(self.fd, 0, capacity)
            if self._map is None:
                self._map = mmap.mmap(self.fd, capacity)
            else:
                self._map.resize(capacity)
        except (OSError, ValueError):  # no space, or a file system that cannot map: write instead
            self._unmap()
            self._mapping = False
            return False
        return True

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
