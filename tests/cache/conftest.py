"""CacheStage over ProviderStage, against a real OpenAI server on 127.0.0.1, on every backend.

    outcome = run(settings, backend, lambda cached: cached.complete(temperature=0))

`backend` is parametrized: the store's table on SQLite and PostgreSQL, Redis (under a random key
prefix, deleted after the test), and memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from testenv import PG_URL
from upstreams import OpenAIUpstream

from keel.cache import CacheBackend, CacheStage, MemoryCacheBackend, RedisCacheBackend, StoreCacheBackend
from keel.client import AsyncClient
from keel.pipeline import Call, ProviderStage, Stage
from keel.routing import build_routing
from keel.settings import Settings, load_settings
from keel.store.testing import temporary_database
from keel.types import ChatResponse, Chunk

T = TypeVar("T")
REDIS_URL = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

CONFIG = """
[providers.up]
type = "openai"
base_url = "{base_url}"
timeout = 5

[models.primary]
provider = "up"
model = "gpt-4o-mini"
fallbacks = {fallbacks}

[routing]
retries = 0
"""


@pytest.fixture
def up() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as upstream:
        yield upstream


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "redis", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheBackend]:
    if request.param == "sqlite":
        yield StoreCacheBackend(f"sqlite:///{tmp_path / 'cache.db'}")
    elif request.param == "postgresql":
        with temporary_database(PG_URL) as url:
            yield StoreCacheBackend(url)
    elif request.param == "memory":
        yield MemoryCacheBackend()
    else:
        prefix = f"keel-test:{secrets.token_hex(6)}:"
        yield RedisCacheBackend(REDIS_URL, prefix=prefix)
        delete_redis_keys(prefix)


def delete_redis_keys(prefix: str) -> int:
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=prefix + "*"))
        return client.delete(*keys) if keys else 0


def configure(project: Path, up: OpenAIUpstream, fallbacks: list[str] | None = None) -> Settings:
    path = project / "keel.toml"
    path.write_text(CONFIG.format(base_url=up.base_url, fallbacks=json.dumps(fallbacks or [])), encoding="utf-8")
    return load_settings(path, env={})


@pytest.fixture
def settings(project: Path, up: OpenAIUpstream) -> Settings:
    return configure(project, up)


@dataclass
class Outcome:
    call: Call
    response: ChatResponse | None = None
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def note(self) -> str | None:
        return self.call.notes.get("cache")

    @property
    def text(self) -> str:
        if self.response is not None:
            return self.response.content
        return "".join(chunk.text for chunk in self.chunks)


class Cached:
    """`CacheStage(ProviderStage())` (or over the routing stages) on a client of `settings`."""

    def __init__(self, settings: Settings, backend: CacheBackend, ttl: float, routing: bool) -> None:
        self.client = AsyncClient(settings, record=False)
        inner: Stage = ProviderStage()
        if routing:
            inner = build_routing(inner, settings, self.client.resolve)
        self.stage = CacheStage(inner, backend, ttl)

    def prepare(self, text: str, cache: bool | None, prompt: Any, params: dict[str, Any], salt: str | None = None) -> Call:
        call = self.client.prepare(text, model=params.pop("model", "primary"), **params)
        call.cache, call.prompt, call.cache_salt = cache, prompt, salt
        return call

    async def complete(self, text: str = "hello there", *, cache: bool | None = None, prompt: Any = None,
                       salt: str | None = None, **params: Any) -> Outcome:
        outcome = Outcome(self.prepare(text, cache, prompt, params, salt))
        outcome.response = await self.stage.complete(outcome.call)
        return outcome

    async def stream(self, text: str = "hello there", *, cache: bool | None = None, prompt: Any = None,
                     **params: Any) -> Outcome:
        outcome = Outcome(self.prepare(text, cache, prompt, {**params, "stream": True}))
        async with aclosing(self.stage.stream(outcome.call)) as chunks:
            outcome.chunks = [chunk async for chunk in chunks]
        return outcome


def run(settings: Settings, backend: CacheBackend, scenario: Callable[[Cached], Awaitable[T]], *,
        ttl: float = 60.0, routing: bool = False) -> T:
    """`scenario(cached)` in a fresh event loop; the client and the backend closed in that loop."""

    async def main() -> T:
        cached = Cached(settings, backend, ttl, routing)
        try:
            return await scenario(cached)
        finally:
            await cached.client.aclose()
            await backend.aclose()

    return asyncio.run(main())
