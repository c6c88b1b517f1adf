"""The cache among the other stages: below structured output (hits are validated and parsed too)."""

from __future__ import annotations

import asyncio

from upstreams import OpenAIUpstream

from keel.cache import CacheStage, MemoryCacheBackend
from keel.client import AsyncClient
from keel.pipeline import ProviderStage
from keel.settings import Settings
from keel.structured.stage import StructuredStage

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}, "required": ["n"]}
OTHER = {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]}


def test_structured_output_above_the_cache_parses_hits(settings: Settings, up: OpenAIUpstream) -> None:
    async def scenario() -> list[tuple[object, object]]:
        client = AsyncClient(settings, record=False)
        stage = StructuredStage(CacheStage(ProviderStage(), MemoryCacheBackend(), 60))
        outcomes = []
        try:
            for schema in (SCHEMA, SCHEMA, OTHER):
                call = client.prepare("numbers", model="primary", temperature=0)
                call.output = schema
                response = await stage.complete(call)
                outcomes.append((response.parsed, call.notes["cache"]))
        finally:
            await client.aclose()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert outcomes == [({"n": 3}, "miss"), ({"n": 3}, "hit"), ({"s": ""}, "miss")]
    assert up.count == 2  # the schema is in the request the cache sees: another schema, another entry


def test_a_repaired_call_is_a_hit_only_when_every_pass_hit(settings: Settings) -> None:
    async def scenario() -> list[tuple[object, object]]:
        client = AsyncClient(settings, record=False)
        client.provider("fake").queue("not json", '{"n": 5}')
        stage = StructuredStage(CacheStage(ProviderStage(), MemoryCacheBackend(), 60))
        outcomes = []
        try:
            for _ in range(2):
                call = client.prepare("numbers", model="fake/echo", temperature=0)
                call.output = SCHEMA
                response = await stage.complete(call)
                outcomes.append((response.parsed, call.notes["cache"]))
            assert len(client.provider("fake").history) == 2  # type: ignore[attr-defined]
        finally:
            await client.aclose()
        return outcomes

    assert asyncio.run(scenario()) == [({"n": 5}, "miss"), ({"n": 5}, "hit")]


def test_a_call_partly_answered_from_the_cache_is_a_miss(settings: Settings, up: OpenAIUpstream) -> None:
    async def scenario() -> list[object]:
        client = AsyncClient(settings, record=False)
        stage = CacheStage(ProviderStage(), MemoryCacheBackend(), 60)
        try:
            await stage.complete(client.prepare("first", model="primary", temperature=0))
            call = client.prepare("first", model="primary", temperature=0)
            await stage.complete(call)
            notes = [call.notes["cache"]]
            call.request = client.prepare("second", model="primary", temperature=0).request  # a second pass
            await stage.complete(call)
            return [*notes, call.notes["cache"]]
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == ["hit", "miss"] and up.count == 2
