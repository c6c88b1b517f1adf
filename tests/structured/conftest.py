"""StructuredStage over the real routing stack and providers (fake, HTTP upstreams, the local model).

    client = structured_client(settings)           # pipeline: [Record →] Structured → routing → provider
    outcome = asyncio.run(ask(client, Invoice, "…", model="fake/echo"))

`wire(client)` composes the pipeline the composition root will build (RecordStage outermost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from upstreams import AnthropicUpstream, OpenAIUpstream

from keel.client import AsyncClient
from keel.pipeline import Call, ProviderStage, Stage
from keel.routing import build_routing
from keel.settings import Settings, load_settings
from keel.structured import OutputSpec, StructuredStage, mode_for
from keel.tracing.stage import RecordStage
from keel.types import ChatResponse, Chunk


def wire(client: AsyncClient, *, record: bool = False, max_repairs: int = 2) -> Stage:
    """RecordStage (when recording) → StructuredStage → routing → ProviderStage, set as `client.pipeline`."""
    routed = build_routing(ProviderStage(), client.settings, client.resolve)
    stage: Stage = StructuredStage(routed, max_repairs=max_repairs, mode_for=mode_for(client.settings))
    if record:
        stage = RecordStage(stage, client.recorder, client.prices)
    client.pipeline = stage
    return stage


def structured_client(settings: Settings, *, record: bool = False, max_repairs: int = 2) -> AsyncClient:
    client = AsyncClient(settings, record=record)
    wire(client, record=record, max_repairs=max_repairs)
    return client


@dataclass
class Outcome:
    call: Call
    response: ChatResponse | None = None
    chunks: list[Chunk] = field(default_factory=list)
    error: Exception | None = None

    @property
    def notes(self) -> dict[str, Any]:
        return self.call.notes["structured"]

    @property
    def oks(self) -> list[bool]:
        return [attempt["ok"] for attempt in self.notes["attempts"]]


async def ask(client: AsyncClient, output: Any, messages: Any = "Extract it.", *, close: bool = True,
              **options: Any) -> Outcome:
    """One structured call through `client.pipeline`; its error is kept, not raised."""
    outcome = Outcome(client.prepare(messages, **options))
    outcome.call.output = OutputSpec.of(output) if output is not None else None
    try:
        if outcome.call.request.stream:
            async with aclosing(client.pipeline.stream(outcome.call)) as chunks:
                async for chunk in chunks:
                    outcome.chunks.append(chunk)
        else:
            outcome.response = await client.pipeline.complete(outcome.call)
    except Exception as exc:
        outcome.error = exc
    finally:
        if close:
            await client.aclose()
    return outcome


def run_ask(settings: Settings, output: Any, messages: Any = "Extract it.", **options: Any) -> Outcome:
    return asyncio.run(ask(structured_client(settings), output, messages, **options))


class QueuedOpenAIUpstream(OpenAIUpstream):
    """An OpenAI upstream that answers with `replies` in order (then as `reply` says)."""

    def __init__(self, *replies: str) -> None:
        super().__init__()
        self.replies = list(replies)

    def answer(self, body: dict[str, Any]) -> Any:
        if self.replies:
            self.reply = self.replies.pop(0)
        return super().answer(body)


CONFIG = """
[providers.up]
type = "openai"
base_url = "{openai}"
timeout = 5

[providers.claude]
type = "anthropic"
base_url = "{anthropic}"
timeout = 5

[models.gpt]
provider = "up"
model = "gpt-4o-mini"

[models.plain]
provider = "up"
model = "plain-model"
structured_output = "prompt"

[models.claude]
provider = "claude"
model = "claude-sonnet-4-5"

[routing]
retries = 0
"""


@dataclass
class Upstreams:
    up: QueuedOpenAIUpstream
    claude: AnthropicUpstream
    settings: Settings


@pytest.fixture
def ups(project: Path) -> Iterator[Upstreams]:
    with QueuedOpenAIUpstream() as up, AnthropicUpstream() as claude:
        path = project / "keel.toml"
        path.write_text(CONFIG.format(openai=up.base_url, anthropic=claude.base_url), encoding="utf-8")
        yield Upstreams(up, claude, load_settings(path, env={}))


def body_of(up: OpenAIUpstream, index: int = -1) -> dict[str, Any]:
    return up.requests[index].body


def local_settings(project: Path) -> Settings:
    """The local provider with the engine settings the shared engine was loaded with."""
    text = '[providers.local]\ntype = "local"\nn_ctx = 4096\nn_parallel = 2\n'
    (project / "keel.toml").write_text(text, encoding="utf-8")
    return load_settings(project / "keel.toml", env={})


@pytest.fixture(scope="session")
def local_engine(local_provider: Any) -> Iterator[None]:
    """The session's one loaded local model (see tests/conftest.py)."""
    yield
