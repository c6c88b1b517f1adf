"""Round trips shared by concurrent calls: reads grouped into one trip, writes off the caller's path."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from keel.cache import StoreCacheBackend
from keel.cache._batching import Batcher, Entry, WriteBehind


def test_requests_made_together_share_a_trip() -> None:
    trips: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        trips.append(items)
        return [item * 10 for item in items]

    async def scenario() -> list[int]:
        batcher: Batcher[int, int] = Batcher(run)
        return list(await asyncio.gather(*(batcher.submit(i) for i in range(50))))

    assert asyncio.run(scenario()) == [i * 10 for i in range(50)]
    assert sorted(i for trip in trips for i in trip) == list(range(50)) and len(trips) <= 2


def test_a_failed_trip_fails_its_requests_only() -> None:
    def run(items: list[int]) -> list[int]:
        if 0 in items:
            raise OSError("disk gone")
        return items

    async def scenario() -> tuple[BaseException | int, ...]:
        batcher: Batcher[int, int] = Batcher(run)
        failed = await asyncio.gather(batcher.submit(0), return_exceptions=True)
        return (*failed, await batcher.submit(1))

    failed, later = asyncio.run(scenario())
    assert isinstance(failed, OSError) and later == 1


def test_writes_are_readable_at_once_and_written_together_later() -> None:
    written: list[list[Entry]] = []
    wrote = threading.Event()

    def write(entries: list[Entry]) -> None:
        written.append(entries)
        wrote.set()

    async def scenario() -> None:
        behind = WriteBehind(write, delay=0.05)
        for i in range(3):
            behind.put(f"k{i}", b"v%d" % i, 100.0)
        behind.put("k0", b"newer", 200.0)
        assert behind.get("k0") == (b"newer", 200.0) and written == []
        await asyncio.sleep(0.2)
        assert written == [[("k0", b"newer", 200.0), ("k1", b"v1", 100.0), ("k2", b"v2", 100.0)]]
        assert behind.get("k0") is None  # written: read from the store from now on

    asyncio.run(scenario())


def test_flush_and_the_end_of_the_loop_write_what_is_pending() -> None:
    written: list[str] = []
    behind = WriteBehind(lambda entries: written.extend(key for key, _, _ in entries), delay=60)

    async def flushed() -> None:
        behind.put("a", b"1", 1.0)
        await behind.flush()
        assert written == ["a"]

    async def left_pending() -> None:
        behind.put("b", b"2", 1.0)

    asyncio.run(flushed())
    asyncio.run(left_pending())  # asyncio.run ends the loop: the waiting write happens then
    assert written == ["a", "b"]


def test_a_failed_write_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    def write(entries: list[Entry]) -> None:
        raise OSError("read-only file system")

    async def scenario() -> None:
        behind = WriteBehind(write, delay=60, name="cache in sqlite")
        behind.put("a", b"1", 1.0)
        await behind.flush()
        assert behind.get("a") is None

    with caplog.at_level(logging.WARNING, logger="keel.cache"):
        asyncio.run(scenario())
    assert caplog.messages == ["cache in sqlite: could not write 1 entries (read-only file system); they are dropped"]


def test_the_store_backend_reads_its_writes_and_keeps_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"

    async def write() -> list[bytes | None]:
        backend = StoreCacheBackend(url)
        await asyncio.gather(*(backend.set(f"k{i}", b"%d" % i, 60) for i in range(100)))
        values = list(await asyncio.gather(*(backend.get(f"k{i}") for i in range(100))))
        await backend.aclose()
        return values

    async def read() -> list[bytes | None]:
        backend = StoreCacheBackend(url)
        try:
            return list(await asyncio.gather(*(backend.get(f"k{i}") for i in (*range(100), 100))))
        finally:
            await backend.aclose()

    expected = [b"%d" % i for i in range(100)]
    assert asyncio.run(write()) == expected
    assert asyncio.run(read()) == [*expected, None]
