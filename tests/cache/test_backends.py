"""The backends themselves, choosing one from the settings, and a cache that is down."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path

import pytest
import redis
from upstreams import Fault, OpenAIUpstream

from keel.cache import CacheBackend, MemoryCacheBackend, RedisCacheBackend, StoreCacheBackend, cache_backend
from keel.cache.backends import TieredCacheBackend
from keel.errors import ConfigError
from keel.settings import Settings, load_settings

from .conftest import REDIS_URL, Cached, configure, delete_redis_keys, run


def test_set_get_and_expiry(backend: CacheBackend) -> None:
    async def scenario() -> None:
        try:
            assert await backend.get("k") is None
            await backend.set("k", b"\x00value\xff", 60)
            await backend.set("short", b"v", 0.05)
            assert await backend.get("k") == b"\x00value\xff"
            await asyncio.sleep(0.1)
            assert await backend.get("short") is None
        finally:
            await backend.aclose()

    asyncio.run(scenario())


def test_get_many_answers_what_is_there_in_one_go(backend: CacheBackend) -> None:
    async def scenario() -> tuple[dict[str, bytes], dict[str, bytes], dict[str, bytes]]:
        try:
            await backend.set("a", b"\x00one", 60)
            await backend.set("b", b"two", 60)
            await backend.set("gone", b"old", 0.05)
            await asyncio.sleep(0.1)
            return (await backend.get_many(["a", "missing", "b", "gone"]), await backend.get_many([]),
                    await backend.get_many(["missing"]))
        finally:
            await backend.aclose()

    assert asyncio.run(scenario()) == ({"a": b"\x00one", "b": b"two"}, {}, {})


def test_redis_entries_live_under_the_prefix_with_an_expiry() -> None:
    prefix = f"keel-test:{secrets.token_hex(6)}:"
    backend = RedisCacheBackend(REDIS_URL, prefix=prefix)

    async def scenario() -> None:
        await backend.set("abc", b"v", 30)
        await backend.aclose()

    try:
        asyncio.run(scenario())
        with redis.Redis.from_url(REDIS_URL) as client:
            assert client.get(prefix + "abc") == b"v"
            assert 0 < client.pttl(prefix + "abc") <= 30_000
    finally:
        assert delete_redis_keys(prefix) == 1


def test_the_settings_choose_the_backend(tmp_path: Path) -> None:
    def chosen(**cache: object) -> object:
        return cache_backend(load_settings(env={}, home=tmp_path, cache=cache))

    def shared(backend: object) -> object:
        assert isinstance(backend, TieredCacheBackend)  # an in-process front over the shared one
        return backend.shared

    default = shared(chosen())
    assert isinstance(default, StoreCacheBackend) and default.url == f"sqlite:///{tmp_path / 'keel.db'}"
    assert isinstance(shared(chosen(url=REDIS_URL)), RedisCacheBackend)
    other = shared(chosen(url=f"sqlite:///{tmp_path / 'cache.db'}"))
    assert isinstance(other, StoreCacheBackend) and other.url.endswith("cache.db")
    assert isinstance(chosen(url="memory://"), MemoryCacheBackend)
    with pytest.raises(ConfigError, match=r"\[cache\] url must be a redis://, sqlite:///, postgresql:// or memory://"):
        chosen(url="memcached://localhost")


@pytest.mark.parametrize("mode", ["record", "replay"])
def test_under_record_or_replay_the_cache_is_in_memory(tmp_path: Path, mode: str) -> None:
    settings = load_settings(env={}, home=tmp_path, cache={"url": REDIS_URL}, replay={"mode": mode})
    assert isinstance(cache_backend(settings), MemoryCacheBackend)


def test_the_memory_backend_drops_the_oldest_entries() -> None:
    backend = MemoryCacheBackend(max_entries=2)

    async def scenario() -> list[bytes | None]:
        for key in ("a", "b", "a", "c"):  # writing "a" again makes it the newest
            await backend.set(key, key.encode(), 60)
        return [await backend.get(key) for key in ("a", "b", "c")]

    assert asyncio.run(scenario()) == [b"a", None, b"c"]


def test_a_cache_that_is_down_never_fails_the_call(settings: Settings, up: OpenAIUpstream,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    down = RedisCacheBackend("redis://127.0.0.1:1/0", prefix="never:")

    async def scenario(cached: Cached) -> None:
        outcomes = [await cached.complete(temperature=0) for _ in range(2)]
        assert all(o.text == "Echo: hello there" for o in outcomes) and up.count == 2

    with caplog.at_level(logging.WARNING, logger="keel.cache"):
        run(settings, down, scenario)
    [warning] = caplog.messages  # then the cache was left alone: not tried again on every call
    assert "cache read failed (RedisCacheBackend(prefix='never:'))" in warning
    assert "the cache is not used for the next 30s" in warning


def test_an_answer_from_a_fallback_model_is_not_stored(project: Path, up: OpenAIUpstream, tmp_path: Path) -> None:
    settings = configure(project, up, fallbacks=["fake/echo"])
    up.script(Fault.ERROR, times=10, status=503)
    backend = StoreCacheBackend(f"sqlite:///{tmp_path / 'cache.db'}")

    async def scenario(cached: Cached) -> None:
        outcomes = [await cached.complete(temperature=0) for _ in range(2)]
        assert [o.call.notes["answered_by"] for o in outcomes] == ["fake/echo", "fake/echo"]
        assert [o.note for o in outcomes] == ["miss", "miss"] and up.count == 2

    run(settings, backend, scenario, routing=True)


def test_the_front_serves_repeats_without_the_shared_backend(tmp_path: Path) -> None:
    async def scenario() -> tuple[bytes | None, bytes | None, bytes | None]:
        shared = MemoryCacheBackend()
        tiered = TieredCacheBackend(shared, front_ttl=30)
        await tiered.set("k", b"v", ttl=60)
        await shared.aclose()  # the shared copy is gone: only the front can answer now
        first = await tiered.get("k")
        other = TieredCacheBackend(MemoryCacheBackend())
        await other.shared.set("k2", b"w", 60)
        copied = await other.get("k2")  # read through, then kept in the front
        await other.shared.aclose()
        return first, copied, await other.get("k2")

    assert asyncio.run(scenario()) == (b"v", b"w", b"w")


def test_get_many_keeps_what_it_read_in_the_front(tmp_path: Path) -> None:
    async def scenario() -> tuple[dict[str, bytes], bytes | None, bytes | None]:
        tiered = TieredCacheBackend(MemoryCacheBackend(), front_ttl=30)
        await tiered.shared.set("k", b"v", 60)
        found = await tiered.get_many(["k", "absent"])
        await tiered.shared.aclose()  # the shared copy is gone: the front still has it
        return found, await tiered.get("k"), await tiered.get("absent")

    assert asyncio.run(scenario()) == ({"k": b"v"}, b"v", None)
