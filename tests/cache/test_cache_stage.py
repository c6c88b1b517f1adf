"""CacheStage on every backend: what is cached, for how long, and how hits are served."""

from __future__ import annotations

import asyncio

import pytest
from upstreams import Fault, OpenAIUpstream

from keel.cache import CacheBackend, MemoryCacheBackend
from keel.cache.backends import TieredCacheBackend
from keel.errors import ServerError
from keel.prompts.runtime import PromptRef
from keel.settings import Settings

from .conftest import Cached, Outcome, run

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def same_answer(first: Outcome, second: Outcome) -> bool:
    a, b = first.response, second.response
    assert a is not None and b is not None
    return (a.id, a.model, a.message, a.finish_reason, a.usage, a.system_fingerprint, a.provider, a.raw) == \
           (b.id, b.model, b.message, b.finish_reason, b.usage, b.system_fingerprint, b.provider, b.raw)


def test_a_deterministic_request_is_answered_once(settings: Settings, backend: CacheBackend,
                                                  up: OpenAIUpstream) -> None:
    async def scenario(cached: Cached) -> None:
        first = await cached.complete(temperature=0)
        second = await cached.complete(temperature=0)
        assert up.count == 1
        assert (first.note, second.note) == ("miss", "hit")
        assert second.text == "Echo: hello there" and same_answer(first, second)
        assert second.response is not None and second.response.usage.prompt_tokens == 2

    run(settings, backend, scenario)


def test_a_salt_makes_another_entry_of_the_same_request(settings: Settings, backend: CacheBackend,
                                                       up: OpenAIUpstream) -> None:
    async def scenario(cached: Cached) -> None:
        salts = ["repeat:0", "repeat:1", "repeat:0", None, "repeat:1"]
        outcomes = [await cached.complete(cache=True, salt=salt) for salt in salts]
        assert [o.note for o in outcomes] == ["miss", "miss", "hit", "miss", "hit"] and up.count == 3

    run(settings, backend, scenario)


def test_a_hit_notes_the_latency_of_the_call_that_produced_it(settings: Settings, backend: CacheBackend,
                                                             up: OpenAIUpstream) -> None:
    up.script(Fault.SLOW, delay=0.2)

    async def scenario(cached: Cached) -> None:
        first, second = [await cached.complete(temperature=0) for _ in range(2)]
        assert "cache_latency_ms" not in first.call.notes
        assert 200 <= second.call.notes["cache_latency_ms"] < 2000

    run(settings, backend, scenario)


def test_a_seed_makes_a_request_deterministic(settings: Settings, backend: CacheBackend, up: OpenAIUpstream) -> None:
    async def scenario(cached: Cached) -> None:
        outcomes = [await cached.complete(temperature=0.7, seed=7) for _ in range(2)]
        assert up.count == 1 and [o.note for o in outcomes] == ["miss", "hit"]

    run(settings, backend, scenario)


def test_a_non_deterministic_request_is_not_cached(settings: Settings, backend: CacheBackend,
                                                   up: OpenAIUpstream) -> None:
    async def scenario(cached: Cached) -> None:
        outcomes = [await cached.complete(temperature=0.7) for _ in range(2)]
        outcomes += [await cached.complete() for _ in range(2)]  # the provider's default temperature
        assert up.count == 4 and all(o.note is None for o in outcomes)

    run(settings, backend, scenario)


def test_cache_true_caches_even_a_non_deterministic_request(settings: Settings, backend: CacheBackend,
                                                            up: OpenAIUpstream) -> None:
    async def scenario(cached: Cached) -> None:
        outcomes = [await cached.complete(temperature=0.7, cache=True) for _ in range(2)]
        assert up.count == 1 and [o.note for o in outcomes] == ["miss", "hit"]

    run(settings, backend, scenario)


def test_cache_false_neither_reads_nor_writes(settings: Settings, backend: CacheBackend, up: OpenAIUpstream) -> None:
    async def scenario(cached: Cached) -> None:
        await cached.complete("stored", temperature=0)
        bypassed = await cached.complete("stored", temperature=0, cache=False)
        assert up.count == 2 and bypassed.note is None
        await cached.complete("not stored", temperature=0, cache=False)
        after = await cached.complete("not stored", temperature=0)
        assert up.count == 4 and after.note == "miss"

    run(settings, backend, scenario)


def test_an_error_is_not_cached(settings: Settings, backend: CacheBackend, up: OpenAIUpstream) -> None:
    up.script(Fault.ERROR, status=500)

    async def scenario(cached: Cached) -> None:
        with pytest.raises(ServerError):
            await cached.complete(temperature=0)
        answered = await cached.complete(temperature=0)
        assert answered.note == "miss" and answered.text == "Echo: hello there" and up.count == 2
        assert (await cached.complete(temperature=0)).note == "hit" and up.count == 2

    run(settings, backend, scenario)


def test_an_entry_expires_after_its_ttl(settings: Settings, backend: CacheBackend, up: OpenAIUpstream) -> None:
    async def scenario(cached: Cached) -> None:
        notes = [(await cached.complete(temperature=0)).note for _ in range(2)]
        await asyncio.sleep(0.3)
        notes.append((await cached.complete(temperature=0)).note)
        assert notes == ["miss", "hit", "miss"] and up.count == 2

    run(settings, backend, scenario, ttl=0.2)


def test_the_prompt_version_is_part_of_the_key(settings: Settings, backend: CacheBackend, up: OpenAIUpstream) -> None:
    v1, v2 = PromptRef("summarize", "a" * 64), PromptRef("summarize", "b" * 64, label="prod")

    async def scenario(cached: Cached) -> None:
        notes = [(await cached.complete(temperature=0, prompt=ref)).note for ref in (v1, v2, v1, v2)]
        assert notes == ["miss", "miss", "hit", "hit"] and up.count == 2
        assert (await cached.complete(temperature=0)).note == "miss"  # no prompt: another request

    run(settings, backend, scenario)


def test_parameters_are_part_of_the_key_but_not_delivery_options(settings: Settings, backend: CacheBackend,
                                                                  up: OpenAIUpstream) -> None:
    async def scenario(cached: Cached) -> None:
        await cached.complete(temperature=0)
        assert (await cached.complete(temperature=0, max_tokens=1)).note == "miss"
        assert (await cached.complete(temperature=0, logit_bias={"1": 5})).note == "miss"  # a passthrough field
        assert (await cached.complete(temperature=0, user="someone")).note == "hit"
        assert (await cached.complete(temperature=0, model="up/gpt-4o-mini")).note == "hit"  # same upstream model
        assert up.count == 3

    run(settings, backend, scenario)


def test_a_streamed_answer_is_stored_and_served_to_plain_and_streamed_calls(
    settings: Settings, backend: CacheBackend, up: OpenAIUpstream
) -> None:
    async def scenario(cached: Cached) -> None:
        streamed = await cached.stream(temperature=0)
        plain = await cached.complete(temperature=0)
        replayed = await cached.stream(temperature=0)
        assert up.count == 1 and [streamed.note, plain.note, replayed.note] == ["miss", "hit", "hit"]
        assert streamed.text == plain.text == replayed.text == "Echo: hello there"
        assert replayed.chunks[0].delta == {"role": "assistant", "content": "Echo: hello there"}
        last = replayed.chunks[-1]
        assert last.finish_reason == "stop" and last.usage == streamed.chunks[-1].usage
        assert last.usage is not None and last.usage.completion_tokens == 3

    run(settings, backend, scenario)


def test_a_plain_answer_is_served_as_a_stream(settings: Settings, backend: CacheBackend, up: OpenAIUpstream) -> None:
    async def scenario(cached: Cached) -> None:
        plain = await cached.complete(temperature=0)
        replayed = await cached.stream(temperature=0)
        assert up.count == 1 and replayed.note == "hit" and replayed.text == plain.text
        assert [c.finish_reason for c in replayed.chunks] == [None, "stop"]
        assert plain.response is not None and replayed.chunks[-1].usage == plain.response.usage

    run(settings, backend, scenario)


def test_tool_calls_are_cached_plain_and_streamed(settings: Settings, backend: CacheBackend,
                                                  up: OpenAIUpstream) -> None:
    up.tool_input = {"city": "Oslo"}

    async def scenario(cached: Cached) -> None:
        streamed = await cached.stream("weather?", temperature=0, tools=TOOLS)
        plain = await cached.complete("weather?", temperature=0, tools=TOOLS)
        assert up.count == 1 and plain.note == "hit" and plain.response is not None
        assert plain.response.finish_reason == "tool_calls"
        assert plain.response.message["tool_calls"] == [{"id": "call_upstream_1", "type": "function", "function": {
            "name": "lookup", "arguments": '{"city":"Oslo"}'}}]
        replayed = await cached.stream("weather?", temperature=0, tools=TOOLS)
        calls = replayed.chunks[-2].delta["tool_calls"]
        assert calls[0]["index"] == 0 and calls[0]["function"]["arguments"] == '{"city":"Oslo"}'
        assert streamed.note == "miss" and replayed.chunks[-1].finish_reason == "tool_calls"

    run(settings, backend, scenario)


def test_a_stream_cut_short_is_not_stored(settings: Settings, backend: CacheBackend, up: OpenAIUpstream) -> None:
    up.script(Fault.STREAM_CUT, clean=True)

    async def scenario(cached: Cached) -> None:
        try:
            await cached.stream(temperature=0)
        except Exception:
            pass  # however the provider reports the cut: nothing may be stored
        assert (await cached.complete(temperature=0)).note == "miss" and up.count == 2

    run(settings, backend, scenario)


def test_prefetched_entries_answer_without_the_shared_backend(settings: Settings, up: OpenAIUpstream) -> None:
    """The eval runner reads a batch's entries ahead (one round trip); each call then hits the
    front, so it is answered even if the shared backend is gone by then."""
    shared = MemoryCacheBackend()

    async def scenario(cached: Cached) -> None:
        texts = [f"question {i}" for i in range(5)]
        first = [await cached.complete(text, temperature=0) for text in texts]
        assert [o.note for o in first] == ["miss"] * 5 and up.count == 5
        cached.stage.backend.front = MemoryCacheBackend()  # a new process: nothing in its front
        calls = [cached.prepare(text, None, None, {"temperature": 0}) for text in texts]
        await cached.stage.prefetch(calls)
        await shared.aclose()
        answers = [await cached.stage.complete(call) for call in calls]
        assert [call.notes["cache"] for call in calls] == ["hit"] * 5 and up.count == 5
        assert [a.content for a in answers] == [o.text for o in first]

    run(settings, TieredCacheBackend(shared), scenario)


class CountingBackend(MemoryCacheBackend):
    """A memory backend that counts single-key reads."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        return await super().get(key)


def test_a_call_prefetched_as_missing_is_not_read_again(settings: Settings, up: OpenAIUpstream) -> None:
    """The eval runner's first run: the batch's read found nothing, so each call goes straight to
    the upstream (one read per batch, not one more per call), and its answer is stored as usual."""
    backend = CountingBackend()

    async def scenario(cached: Cached) -> None:
        await cached.complete("question 0", temperature=0)
        calls = [cached.prepare(f"question {i}", None, None, {"temperature": 0}) for i in range(3)]
        await cached.stage.prefetch(calls)
        reads = backend.gets
        await asyncio.gather(*(cached.stage.complete(call) for call in calls))
        assert [call.notes["cache"] for call in calls] == ["hit", "miss", "miss"]
        assert backend.gets - reads == 1  # question 0's own read; the two missing ones were not read again
        assert up.count == 3
        again = [cached.prepare(f"question {i}", None, None, {"temperature": 0}) for i in range(3)]
        await asyncio.gather(*(cached.stage.complete(call) for call in again))
        assert [call.notes["cache"] for call in again] == ["hit"] * 3 and up.count == 3

    run(settings, backend, scenario)
