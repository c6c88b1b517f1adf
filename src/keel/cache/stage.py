"""CacheStage: answer a request seen before from the cache, without calling the model.

Which calls use the cache (`call.cache`):
  - None (the default): deterministic requests only, temperature 0 or a seed;
  - True: any request; False: none (neither read nor written; the eval runner's repeats).
What is stored: answers that finished with stop, length or tool_calls (tool calls at temperature
0 are as reproducible as text). Never errors, streams cut short, content-filtered answers, nor an
answer from a fallback model (it would stand in for the model asked for until it expires).

A hit returns the stored answer with its stored usage and sets `call.notes["cache"] = "hit"`
(the recording stage prices it at 0) and `call.notes["cache_latency_ms"]`, how long the call that
produced the answer took (the eval runner scores latency by it); a miss sets "miss" and stores the
answer with its latency. `call.cache_salt` keeps identical requests apart (see key.py). Calls
that do not use the cache get no note. A call that passes several times (structured-output repairs, from a
stage above) is a "hit" only if every pass was. A plain request and a stream share entries: a hit
on a stream is played as one text chunk (plus one for tool calls) and a last chunk with finish
reason and usage.

The cache never fails a call: a backend that cannot be read or written is logged and not used
for `PAUSE_AFTER_FAILURE` seconds (calls go straight to the model meanwhile, without waiting on a
database or Redis that is down).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import orjson

from ..pipeline import Call, Stage, Target
from ..types import ChatResponse, Chunk
from .backends import CacheBackend
from .codec import StreamAssembler, replay_chunks
from .key import canonical_request, digest, is_deterministic

log = logging.getLogger("keel.cache")

CACHEABLE_FINISH = frozenset({"stop", "length", "tool_calls"})
PAUSE_AFTER_FAILURE = 30.0


class CacheStage(Stage):
    def __init__(self, inner: Stage, backend: CacheBackend, ttl: float) -> None:
        super().__init__(inner)
        self.backend = backend
        self.ttl = ttl
        self._fingerprints: dict[tuple[str, str], str | None] = {}
        self._paused_until = 0.0

    async def complete(self, call: Call) -> ChatResponse:
        key = await self.key(call)
        if key is None:
            return await self.inner.complete(call)
        entry = await self._load(call, key)
        _note(call, entry)
        if entry is not None:
            return entry[0]
        asked, started = call.target, time.perf_counter()
        response = await self.inner.complete(call)
        if _storable(call, asked, response):
            await self._store(key, response, (time.perf_counter() - started) * 1000)
        return response

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        key = await self.key(call)
        entry = None if key is None else await self._load(call, key)
        if key is not None:
            _note(call, entry)
        if entry is not None:
            for chunk in replay_chunks(entry[0]):
                yield chunk
            return
        asked, assembler, started = call.target, StreamAssembler(), time.perf_counter()
        async with aclosing(self.inner.stream(call)) as chunks:
            async for chunk in chunks:
                assembler.add(chunk)
                yield chunk
        response = assembler.response(asked.provider.name)
        if key is not None and assembler.finished and _storable(call, asked, response):
            await self._store(key, response, (time.perf_counter() - started) * 1000)

    async def prefetch(self, calls: list[Call]) -> None:
        """Read the entries of `calls` in one round trip, ahead of their turn (the eval runner,
        before it sends a batch): the backend keeps them at hand, so each call's own lookup costs
        no round trip, and a call found missing is not looked up again. Calls with structured
        output are left out (the stage above changes their request, and so their key). Like
        every read, this never fails."""
        if time.monotonic() < self._paused_until:
            return
        keyed = [(call, key) for call in calls if call.output is None and (key := await self.key(call)) is not None]
        if not keyed:
            return
        try:
            found = await self.backend.get_many([key for _, key in keyed])
        except Exception as exc:
            self._pause("read", exc)
            return
        for call, key in keyed:
            if key not in found:
                call.notes["_cache_missed"] = key

    async def key(self, call: Call) -> str | None:
        """The call's cache key, or None when the call does not use the cache."""
        if call.cache is False or (call.cache is None and not is_deterministic(call.request)):
            return None
        target, request = call.target, call.request
        known = call.notes.get("_cache_key")  # computed by `prefetch`, for this very request and target
        if known is not None and known[0] is request and known[1] is target and known[2] == call.cache_salt:
            return known[3]
        fingerprint = await self._fingerprint(target)
        canonical = canonical_request(request, target.provider.name, target.model,
                                      prompt=call.prompt, fingerprint=fingerprint, salt=call.cache_salt)
        key = digest(canonical)
        call.notes["_cache_key"] = (request, target, call.cache_salt, key)
        return key

    async def _fingerprint(self, target: Target) -> str | None:
        ident = (target.provider.name, target.model)
        if ident not in self._fingerprints:
            try:
                self._fingerprints[ident] = await target.provider.fingerprint(target.model)
            except Exception as exc:  # an identity we cannot read leaves the key without it
                log.warning("could not fingerprint %s/%s: %s", *ident, exc)
                self._fingerprints[ident] = None
        return self._fingerprints[ident]

    async def _load(self, call: Call, key: str) -> tuple[ChatResponse, float | None] | None:
        """The stored answer and the latency (ms) of the call that produced it, if known."""
        if time.monotonic() < self._paused_until or call.notes.get("_cache_missed") == key:
            return None
        try:
            value = await self.backend.get(key)
            return None if value is None else decode(value)
        except Exception as exc:  # the cache is an optimisation: a broken one is a miss
            self._pause("read", exc)
            return None

    async def _store(self, key: str, response: ChatResponse, latency_ms: float) -> None:
        if time.monotonic() < self._paused_until:
            return
        try:
            await self.backend.set(key, encode(response, latency_ms), self.ttl)
        except Exception as exc:
            self._pause("write", exc)

    def _pause(self, action: str, error: Exception) -> None:
        log.warning("cache %s failed (%r): %s; the cache is not used for the next %gs",
                    action, self.backend, error, PAUSE_AFTER_FAILURE)
        self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE


def encode(response: ChatResponse, latency_ms: float | None = None) -> bytes:
    """The answer as JSON bytes, the upstream's own body (`raw`) and the latency of the call
    that produced it included."""
    data = response.model_dump(mode="json", exclude={"trace_id", "cost"})
    return orjson.dumps({**data, "raw": response.raw, "latency_ms": latency_ms})


def decode(value: bytes) -> tuple[ChatResponse, float | None]:
    """The answer and its latency (None in entries written before it was kept)."""
    data = orjson.loads(value)
    return ChatResponse.model_validate(data), data.get("latency_ms")


def _note(call: Call, entry: tuple[ChatResponse, float | None] | None) -> None:
    """Note "hit" while every pass of the call through this stage hit (a structured-output
    repair passes again), else "miss": a call partly answered from the cache is priced in full.
    A hit adds the stored latency to `cache_latency_ms` (the passes of a repaired answer add up)."""
    hit = entry is not None
    earlier = call.notes.get("cache", "hit")
    call.notes["cache"] = "hit" if hit and earlier == "hit" else "miss"
    if entry is not None and entry[1] is not None:
        call.notes["cache_latency_ms"] = call.notes.get("cache_latency_ms", 0.0) + entry[1]


def _storable(call: Call, asked: Target, response: ChatResponse) -> bool:
    answered = call.target
    same_model = (answered.provider.name, answered.model) == (asked.provider.name, asked.model)
    return same_model and response.finish_reason in CACHEABLE_FINISH
