"""Where cached answers live, behind one small interface.

    CacheBackend          get(key) -> bytes | None, get_many(keys) -> {key: bytes}, set(key, value, ttl),
                          aclose()   (all async)
    StoreCacheBackend     the `response_cache` table of the trace store (SQLite or PostgreSQL);
                          concurrent reads share one query, writes are batched off the call path
    RedisCacheBackend     Redis (redis.asyncio): one key per entry, under a prefix, expiring by itself
    MemoryCacheBackend    a dict in this process (`memory://`)
    cache_backend(s)      the backend `[cache] url` names: none = the trace store's database

Under record/replay (KEEL_REPLAY) the cache is kept in memory whatever the url says: a recording
run must reach the provider for every request it makes, and a replay run must not be answered by
entries an earlier run left behind (it would pass here and fail on a fresh checkout).

The store is synchronous (SQLAlchemy): its calls run in a worker thread, never on the event
loop. Redis connections belong to the event loop that opened them: one client per loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol
from weakref import WeakKeyDictionary

from ..errors import ConfigError
from ..settings import Settings
from ._batching import Batcher, Entry, WriteBehind

if TYPE_CHECKING:
    from ..store import Store

#: Expired rows of the store are deleted at most this often (seconds), on a write.
PURGE_INTERVAL = 300.0
#: Seconds a write to the store may wait to go with others (it is read back from memory meanwhile).
WRITE_DELAY = 0.1
DEFAULT_REDIS_PREFIX = "keel:cache:"
#: Seconds to connect to Redis and to wait for an answer (a `?socket_timeout=` in the URL wins).
REDIS_TIMEOUT = 2.0
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_SQL_SCHEMES = ("sqlite:", "postgresql:", "postgresql+", "postgres:")


class CacheBackend(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None (never stored, or expired)."""

    async def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """The values stored under `keys`, by key, in one round trip (absent: none, or expired)."""

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` under `key` for `ttl` seconds, replacing what was there."""

    async def aclose(self) -> None:
        """Release connections."""


class StoreCacheBackend:
    """Entries in the `response_cache` table of the store at `url` (opened, and migrated, on first use).

    Concurrent calls share round trips (see _batching.py): reads made while one is under way go
    together on the next, as one SELECT … IN; writes leave the caller's path at once and are
    written together within `WRITE_DELAY` seconds (read back from memory until then)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._purged_at = 0.0
        self._reads: WeakKeyDictionary[asyncio.AbstractEventLoop, Batcher[str, bytes | None]] = WeakKeyDictionary()
        self._writes = WriteBehind(self._set_many, WRITE_DELAY, name=f"cache in {url.split('://')[0]}")

    async def get(self, key: str) -> bytes | None:
        unwritten = self._writes.get(key)
        if unwritten is not None:
            value, expires_at = unwritten
            return value if time.time() < expires_at else None
        loop = asyncio.get_running_loop()
        reads = self._reads.get(loop)
        if reads is None:
            reads = self._reads[loop] = Batcher(self._get_many)
        return await reads.submit(key)

    async def get_many(self, keys: list[str]) -> dict[str, bytes]:
        found = {}
        for key in keys:
            unwritten = self._writes.get(key)
            if unwritten is not None and time.time() < unwritten[1]:
                found[key] = unwritten[0]
        asked = [key for key in keys if key not in found]
        if asked:
            found |= {key: value for key, value in zip(asked, await asyncio.to_thread(self._get_many, asked), strict=True)
                      if value is not None}
        return found

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._writes.put(key, value, time.time() + ttl)

    async def aclose(self) -> None:
        await self._writes.flush()
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            await asyncio.to_thread(store.close)

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        found = self._opened().cache_get_many(list(dict.fromkeys(keys)), time.time())
        return [found.get(key) for key in keys]

    def _set_many(self, entries: list[Entry]) -> None:
        store, now = self._opened(), time.time()
        store.cache_set_many(entries)
        if now - self._purged_at >= PURGE_INTERVAL:
            self._purged_at = now
            store.cache_purge(now)

    def _opened(self) -> Store:
        with self._lock:
            if self._store is None:
                from ..store import open_store

                self._store = open_store(self.url)
            return self._store

    def __repr__(self) -> str:
        return f"StoreCacheBackend({self._store.url if self._store else '…'})"


class RedisCacheBackend:
    """Entries as Redis strings `<prefix><key>`, set with an expiry (PX: sub-second TTLs work)."""

    def __init__(self, url: str, prefix: str = DEFAULT_REDIS_PREFIX) -> None:
        self._redis = _import_redis()
        self.url = url
        self.prefix = prefix
        # A Redis client belongs to the event loop it was made in: one per loop, made on first use.
        self._clients: WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = WeakKeyDictionary()

    async def get(self, key: str) -> bytes | None:
        value = await self._client().get(self.prefix + key)
        return None if value is None else bytes(value)

    async def get_many(self, keys: list[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        values = await self._client().mget([self.prefix + key for key in keys])
        return {key: bytes(value) for key, value in zip(keys, values, strict=True) if value is not None}

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._client().set(self.prefix + key, value, px=max(1, round(ttl * 1000)))

    async def aclose(self) -> None:
        """Close the client of the running loop (clients of other loops are dropped)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        self._clients.clear()
        if client is not None:
            await client.aclose()

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._redis.from_url(
                self.url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT)
        return client

    def __repr__(self) -> str:
        return f"RedisCacheBackend(prefix={self.prefix!r})"


class MemoryCacheBackend:
    """Entries in a dict of this process, the oldest dropped beyond `max_entries`."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, tuple[bytes, float]] = {}

    async def get(self, key: str) -> bytes | None:
        value, expires_at = self._entries.get(key, (None, 0.0))
        return value if time.monotonic() < expires_at else None

    async def get_many(self, keys: list[str]) -> dict[str, bytes]:
        now, found = time.monotonic(), {}
        for key in keys:
            value, expires_at = self._entries.get(key, (None, 0.0))
            if value is not None and now < expires_at:
                found[key] = value
        return found

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (value, time.monotonic() + ttl)
        while len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]

    async def aclose(self) -> None:
        self._entries.clear()

    def __repr__(self) -> str:
        return "MemoryCacheBackend()"


class TieredCacheBackend:
    """A small in-process front over a shared backend: a hit in the front costs no thread hop or
    network round trip. Entries copied from the shared backend live at most `front_ttl` seconds
    here, since their remaining lifetime there is not known."""

    def __init__(self, shared: CacheBackend, max_entries: int = 2_000, front_ttl: float = 60.0) -> None:
        self.shared = shared
        self.front = MemoryCacheBackend(max_entries)
        self.front_ttl = front_ttl

    async def get(self, key: str) -> bytes | None:
        value = await self.front.get(key)
        if value is None:
            value = await self.shared.get(key)
            if value is not None:
                await self.front.set(key, value, self.front_ttl)
        return value

    async def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """From the front, and the rest from the shared backend in one round trip (then kept in
        the front: a caller that reads many keys ahead of using them, the eval runner, finds them
        there when it gets each one)."""
        found = await self.front.get_many(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            fetched = await self.shared.get_many(missing)
            for key, value in fetched.items():
                await self.front.set(key, value, self.front_ttl)
            found |= fetched
        return found

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self.shared.set(key, value, ttl)
        await self.front.set(key, value, min(ttl, self.front_ttl))

    async def aclose(self) -> None:
        await self.front.aclose()
        await self.shared.aclose()

    def __repr__(self) -> str:
        return f"TieredCacheBackend({self.shared!r})"


def cache_backend(settings: Settings) -> CacheBackend:
    """The backend `settings.cache.url` names: None = the trace store's database (in memory
    under record/replay)."""
    url = settings.cache.url
    if settings.replay.mode != "off" or url == "memory://":
        return MemoryCacheBackend()
    if url is None:
        return TieredCacheBackend(StoreCacheBackend(settings.effective_store_url))
    if url.startswith(_REDIS_SCHEMES):
        return TieredCacheBackend(RedisCacheBackend(url))
    if url.startswith(_SQL_SCHEMES):
        return TieredCacheBackend(StoreCacheBackend(url))
    raise ConfigError(
        f"[cache] url must be a redis://, sqlite:///, postgresql:// or memory:// URL (or be left out to "
        f"use the trace store), not {url.split('://')[0]!r}://….",
        key="cache.url",
    )


def _import_redis() -> Any:
    try:
        import redis.asyncio
    except ImportError:
        raise ConfigError("A cache in Redis needs the package `redis`: pip install 'redis>=5' (or leave "
                          "[cache] url out to cache in the trace store).", key="cache.url") from None
    return redis.asyncio
