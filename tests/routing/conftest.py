"""The routing stack over ProviderStage, against real OpenAI and Anthropic servers on 127.0.0.1.

    settings = configure(project, ups, fallbacks=["secondary"], retries=1)
    outcome = run(settings, lambda routed: routed.complete())

`primary` is an OpenAI-compatible upstream (`ups.up`), `secondary` an Anthropic one (`ups.claude`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from upstreams import AnthropicUpstream, OpenAIUpstream

from keel.client import AsyncClient
from keel.pipeline import Call, ProviderStage, Stage
from keel.routing import Breakers, CircuitBreakerStage, build_routing
from keel.settings import Settings, load_settings
from keel.types import ChatResponse, Chunk

T = TypeVar("T")

CONFIG = """
[providers.up]
type = "openai"
base_url = "{openai}"
timeout = 5
{up_options}

[providers.claude]
type = "anthropic"
base_url = "{anthropic}"
timeout = 5

[models.primary]
provider = "up"
model = "gpt-4o-mini"
fallbacks = {fallbacks}

[models.secondary]
provider = "claude"
model = "claude-sonnet-4-5"

[routing]
{routing}
"""


class CountingUpstream(OpenAIUpstream):
    """An OpenAI upstream that also counts the requests it is handling at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.peak = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await super()._handle(request)
        finally:
            self.in_flight -= 1


@dataclass
class Upstreams:
    up: CountingUpstream
    claude: AnthropicUpstream


@pytest.fixture
def ups() -> Iterator[Upstreams]:
    with CountingUpstream() as up, AnthropicUpstream() as claude:
        yield Upstreams(up, claude)


def configure(project: Path, ups: Upstreams, *, fallbacks: list[str] | None = None,
              up_options: dict[str, Any] | None = None, **routing: Any) -> Settings:
    """Write keel.toml for these upstreams (small backoffs unless given) and load it."""
    routing = {"backoff_base": 0.01, "backoff_max": 0.05, **routing}
    text = CONFIG.format(
        openai=ups.up.base_url,
        anthropic=ups.claude.base_url,
        up_options=_toml_lines(up_options or {}),
        fallbacks=json.dumps(fallbacks or []),
        routing=_toml_lines(routing),
    )
    path = project / "keel.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env={})


def _toml_lines(values: dict[str, Any]) -> str:
    return "\n".join(f"{key} = {json.dumps(value)}" for key, value in values.items())


@dataclass
class Outcome:
    call: Call
    response: ChatResponse | None = None
    chunks: list[Chunk] = field(default_factory=list)
    error: Exception | None = None

    @property
    def attempts(self) -> list[dict[str, Any]]:
        return self.call.notes.get("attempts", [])

    @property
    def text(self) -> str:
        if self.response is not None:
            return str(self.response.message.get("content"))
        return "".join(chunk.text for chunk in self.chunks)


class Routed:
    """`build_routing(ProviderStage(), …)` on a client of `settings` (nothing recorded)."""

    def __init__(self, settings: Settings) -> None:
        self.client = AsyncClient(settings, record=False)
        self.stage = build_routing(ProviderStage(), settings, self.client.resolve)

    async def complete(self, model: str = "primary") -> Outcome:
        outcome = Outcome(self.client.prepare("hi", model=model))
        try:
            outcome.response = await self.stage.complete(outcome.call)
        except Exception as exc:
            outcome.error = exc
        return outcome

    async def stream(self, model: str = "primary") -> Outcome:
        outcome = Outcome(self.client.prepare("hi", model=model, stream=True))
        try:
            async with aclosing(self.stage.stream(outcome.call)) as chunks:
                async for chunk in chunks:
                    outcome.chunks.append(chunk)
        except Exception as exc:
            outcome.error = exc
        return outcome

    @property
    def breakers(self) -> Breakers:
        stage: Stage = self.stage
        while not isinstance(stage, CircuitBreakerStage):
            stage = stage.inner
        return stage.breakers


def run(settings: Settings, scenario: Callable[[Routed], Awaitable[T]]) -> T:
    """`scenario(routed)` in a fresh event loop, the client's connections closed in that loop."""
    return asyncio.run(run_async(Routed(settings), scenario))


async def run_async(routed: Routed, scenario: Callable[[Routed], Awaitable[T]]) -> T:
    try:
        return await scenario(routed)
    finally:
        await routed.client.aclose()
