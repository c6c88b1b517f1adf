"""A journal segment: what is appended is in the file, whole, past the space first reserved."""

from __future__ import annotations

import os
from pathlib import Path

from keel.tracing.segment import FIRST_CHUNK, Segment


def test_appends_land_in_the_file_in_order_and_close_cuts_the_reserved_space(tmp_path: Path) -> None:
    segment = Segment(tmp_path / "00000001.jsonl")
    lines = [f'{{"n": {i}, "pad": "{"x" * (i % 300)}"}}\n'.encode() for i in range(5000)]  # ~0.8 MB: grows twice
    for item in lines:
        segment.append(item)
    assert sum(map(len, lines)) > 2 * FIRST_CHUNK
    # Before close, another reader (the importer after a crash) sees the records, then zeros.
    seen = (tmp_path / "00000001.jsonl").read_bytes()
    assert seen.rstrip(b"\0") == b"".join(lines) and len(seen) >= segment.size
    segment.close()
    assert (tmp_path / "00000001.jsonl").read_bytes() == b"".join(lines)


def test_an_unused_segment_closes_empty(tmp_path: Path) -> None:
    segment = Segment(tmp_path / "s.jsonl")
    segment.close()
    assert os.path.getsize(tmp_path / "s.jsonl") == 0


def test_without_reservable_space_appends_are_written_instead(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A file system that cannot reserve (or map) the space: no mapping, plain writes, same file."""
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    segment = Segment(tmp_path / "s.jsonl")
    for i in range(3):
        segment.append(b'{"n": %d}\n' % i)
    assert (tmp_path / "s.jsonl").read_bytes() == b'{"n": 0}\n{"n": 1}\n{"n": 2}\n'
    segment.close()
    assert (tmp_path / "s.jsonl").read_bytes() == b'{"n": 0}\n{"n": 1}\n{"n": 2}\n'
