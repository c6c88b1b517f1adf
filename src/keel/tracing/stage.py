"""The recording stage: every call, answered or failed, becomes one trace record with its cost.

It never raises into the caller: the recorder logs its own failures. Records go to the
recorder's journal before the response is handed back, so an answered call is never lost.
"""

from __future__ import annotations

import logging
from decimal import Decimal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Protocol

from ..cost.estimate import estimate_usage
from ..cost.pricing import PriceBook
from ..pipeline import Call, Stage
from ..types import ChatResponse, Chunk, Cost, Usage

log = logging.getLogger("keel.tracing")


class Sink(Protocol):
    def record(self, record: dict[str, Any]) -> None: ...


class RecordStage(Stage):
    def __init__(self, inner: Stage, sink: Sink, prices: PriceBook) -> None:
        super().__init__(inner)
        self.sink = sink
        self.prices = prices
        self._fingerprints: dict[tuple[str, str], str | None] = {}

    async def complete(self, call: Call) -> ChatResponse:
        started, clock = time.time(), time.perf_counter()
        try:
            response = await self.inner.complete(call)
        except BaseException as exc:
            self._emit(call, started, clock, None, error=exc)
            raise
        # After the call: a fallback stage may have moved `call.target` to whoever answered.
        fingerprint = await self._fingerprint(call)
        response.trace_id = call.trace_id
        response.cost = self._cost(call, response.usage, started)
        self._emit(call, started, clock, fingerprint, response=response)
        return response

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        started, clock = time.time(), time.perf_counter()
        state = _StreamState()
        try:
            async for chunk in self.inner.stream(call):
                state.add(chunk, clock)
                yield chunk
        except BaseException as exc:
            self._emit(call, started, clock, None, response=state.response(call), error=exc, ttft=state.ttft)
            raise
        fingerprint = await self._fingerprint(call)
        if state.usage is None:
            state.usage = await self._estimate(call, "".join(state.parts))
        response = state.response(call)
        response.cost = self._cost(call, response.usage, started) if state.usage else Cost()
        self._emit(call, started, clock, fingerprint, response=response, ttft=state.ttft, usage_known=bool(state.usage))

    async def _estimate(self, call: Call, text: str) -> Usage | None:
        """The upstream sent no usage: count with the model's tokenizer, marked as estimated."""
        try:
            messages = [m.model_dump(exclude_none=True) for m in call.request.messages]
            return await estimate_usage(call.target.provider, call.target.model, messages, text)
        except Exception as exc:  # an estimate is optional; the record is not
            log.warning("could not estimate usage for %s: %s", call.trace_id, exc)
            return None

    async def _fingerprint(self, call: Call) -> str | None:
        key = (call.target.provider.name, call.target.model)
        if key not in self._fingerprints:
            try:
                self._fingerprints[key] = await call.target.provider.fingerprint(call.target.model)
            except Exception as exc:  # an identity we cannot read is recorded as unknown
                log.warning("could not fingerprint %s/%s: %s", *key, exc)
                self._fingerprints[key] = None
        return self._fingerprints[key]

    def _cost(self, call: Call, usage: Usage, started: float) -> Cost:
        if call.notes.get("cache") == "hit":
            return Cost(amount=Decimal(0), source="cache hit")
        target = call.target
        at = datetime.fromtimestamp(started, UTC)
        return self.prices.cost(target.provider.name, target.pricing_id, target.model, usage, at)

    def _emit(
        self,
        call: Call,
        started: float,
        clock: float,
        fingerprint: str | None,
        *,
        response: ChatResponse | None = None,
        error: BaseException | None = None,
        ttft: float | None = None,
        usage_known: bool = True,
    ) -> None:
        elapsed = time.perf_counter() - clock
        try:
            record = _record(call, started, elapsed, fingerprint, response, error, ttft, usage_known)
            self.sink.record(record)
        except Exception:  # recording must never fail the call
            log.exception("could not record trace %s", call.trace_id)


class _StreamState:
    """What a stream delivered so far: text, finish reason, usage and time to first token."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.ttft: float | None = None
        self.meta: Chunk | None = None

    def add(self, chunk: Chunk, clock: float) -> None:
        if self.ttft is None and chunk.delta:
            self.ttft = (time.perf_counter() - clock) * 1000
        self.meta = self.meta or chunk
        if chunk.text:
            self.parts.append(chunk.text)
        self.finish_reason = chunk.finish_reason or self.finish_reason
        self.usage = chunk.usage or self.usage

    def response(self, call: Call) -> ChatResponse:
        meta = self.meta or Chunk()
        return ChatResponse(
            id=meta.id,
            model=meta.model,
            message={"role": "assistant", "content": "".join(self.parts)},
            finish_reason=self.finish_reason,
            usage=self.usage or Usage(),
            system_fingerprint=meta.system_fingerprint,
            provider=call.target.provider.name,
            trace_id=call.trace_id,
        )


def _record(
    call: Call,
    started: float,
    elapsed: float,
    fingerprint: str | None,
    response: ChatResponse | None,
    error: BaseException | None,
    ttft: float | None,
    usage_known: bool,
) -> dict[str, Any]:
    request = call.raw_request or call.request.model_dump(exclude_none=True, by_alias=True)
    usage = response.usage if response is not None and usage_known else None
    cost = response.cost if response is not None else Cost()
    return {
        "id": call.trace_id,
        "parent_id": call.parent_id,
        "kind": "chat",
        "source": call.source,
        "started_at": started,
        "ended_at": started + elapsed,
        "latency_ms": elapsed * 1000,
        "ttft_ms": ttft,
        "provider": call.target.provider.name,
        "model": call.target.alias,
        "upstream_model": (response.model if response and response.model else call.target.model),
        "fingerprint": fingerprint or (response.system_fingerprint if response else None),
        "request": request,
        "response": {"message": response.message, "finish_reason": response.finish_reason} if response else None,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "cached_tokens": usage.cached_tokens if usage else None,
        "usage_estimated": bool(usage and usage.estimated),
        "cost": None if cost.amount is None else str(cost.amount),
        "cost_source": cost.source,
        "currency": cost.currency,
        "status": "error" if error is not None else "ok",
        "error_class": type(error).__name__ if error is not None else None,
        "error_message": str(error)[:2000] if error is not None else None,
        "stream": bool(call.request.stream),
        "tags": call.tags,
        "notes": {k: v for k, v in call.notes.items() if not k.startswith("_")} or None,
        **_prompt_fields(call, fingerprint or (response.system_fingerprint if response else None)),
    }


def _prompt_fields(call: Call, fingerprint: str | None) -> dict[str, Any]:
    """Which prompt ran, and whether the model that answered is the one keel.lock pins."""
    ref = call.prompt
    if ref is None:
        return {}
    drift = None
    if ref.locked is not None:
        pinned = ref.locked.model
        moved = (pinned.provider, pinned.model) != (call.target.provider.name, call.target.model)
        changed = bool(pinned.fingerprint and fingerprint and pinned.fingerprint != fingerprint)
        drift = moved or changed
    return {"prompt_name": ref.name, "prompt_version": ref.version, "prompt_label": ref.label, "model_drift": drift}
