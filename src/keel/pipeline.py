"""The call pipeline: a chain of stages with one interface, innermost the provider.

Every call, from the library or the gateway, is a `Call` passed down the chain. A stage does its
work around `self.inner`: recording, and later policy, cache, routing and validation, are each a
stage inserted by the composition root (`client.py`), never code spread across providers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .providers.base import Provider
from .types import ChatRequest, ChatResponse, Chunk


@dataclass(frozen=True)
class Target:
    """Where a model name resolved to: a provider instance and its upstream model id."""

    alias: str
    provider: Provider
    model: str
    pricing_id: str | None = None


@dataclass
class Call:
    """One request on its way through the pipeline, with what the stages learn about it."""

    request: ChatRequest
    target: Target
    trace_id: str
    parent_id: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    source: str = "library"
    #: The request as the caller sent it (gateway), recorded instead of re-serialising `request`.
    raw_request: dict[str, Any] | None = None
    #: Notes stages leave for the trace (e.g. attempts, cache hits); keys starting with "_" are
    #: private to the stages and not recorded.
    notes: dict[str, Any] = field(default_factory=dict)
    #: The prompt this call renders (a keel.prompts.runtime.PromptRef), when called by name.
    prompt: Any = None
    #: The structured output asked for (a keel.structured.OutputSpec), if any.
    output: Any = None
    #: Per-call cache choice: None = the default rule (deterministic requests only), False = bypass,
    #: True = cache even a non-deterministic request.
    cache: bool | None = None
    #: Mixed into the cache key: the same request under another salt is another entry (the eval
    #: runner salts with the repeat index, so repeats stay independent answers, each reusable).
    cache_salt: str | None = None


class Stage:
    """A pipeline stage. Subclasses override `complete` and `stream`, delegating to `inner`."""

    def __init__(self, inner: "Stage") -> None:
        self.inner = inner

    async def complete(self, call: Call) -> ChatResponse:
        return await self.inner.complete(call)

    def stream(self, call: Call) -> AsyncIterator[Chunk]:
        return self.inner.stream(call)


class ProviderStage(Stage):
    """The innermost stage: hands the call to the target's provider."""

    def __init__(self) -> None:
        pass

    async def complete(self, call: Call) -> ChatResponse:
        response = await call.target.provider.complete(call.request, call.target.model)
        response.provider = call.target.provider.name
        return response

    def stream(self, call: Call) -> AsyncIterator[Chunk]:
        return call.target.provider.stream(call.request, call.target.model)
