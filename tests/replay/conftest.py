"""ReplayStage over ProviderStage, against a real OpenAI server on 127.0.0.1.

    outcome = run(settings, "record", directory, lambda replayed: replayed.complete("hi"))
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from upstreams import OpenAIUpstream

from keel.client import AsyncClient
from keel.pipeline import Call, ProviderStage
from keel.replay import ReplayStage
from keel.settings import Settings, load_settings
from keel.types import ChatResponse, Chunk

T = TypeVar("T")
KEY_VAR = "KEEL_TEST_UP_KEY"
SECRET = "sk-test-SECRET123"

CONFIG = """
[providers.up]
type = "openai"
base_url = "{base_url}"
api_key_env = "{key_var}"
timeout = 5

[models.primary]
provider = "up"
model = "gpt-4o-mini"
"""


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIUpstream]:
    monkeypatch.setenv(KEY_VAR, SECRET)
    with OpenAIUpstream() as upstream:
        yield upstream


@pytest.fixture
def settings(project: Path, up: OpenAIUpstream) -> Settings:
    path = project / "keel.toml"
    path.write_text(CONFIG.format(base_url=up.base_url, key_var=KEY_VAR), encoding="utf-8")
    return load_settings(path, env={})


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    return tmp_path / "llm_recordings" / "test_module"


@dataclass
class Outcome:
    call: Call
    response: ChatResponse | None = None
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def text(self) -> str:
        if self.response is not None:
            return self.response.content
        return "".join(chunk.text for chunk in self.chunks)


class Replayed:
    """`ReplayStage(ProviderStage(), mode, directory)` on a client of `settings` (nothing traced)."""

    def __init__(self, settings: Settings, mode: str, directory: Path) -> None:
        self.client = AsyncClient(settings, record=False)
        self.stage = ReplayStage(ProviderStage(), mode, directory)

    async def complete(self, text: str = "hello there", **params: Any) -> Outcome:
        outcome = Outcome(self.client.prepare(text, model="primary", **params))
        outcome.response = await self.stage.complete(outcome.call)
        return outcome

    async def stream(self, text: str = "hello there", **params: Any) -> Outcome:
        outcome = Outcome(self.client.prepare(text, model="primary", stream=True, **params))
        async with aclosing(self.stage.stream(outcome.call)) as chunks:
            async for chunk in chunks:
                outcome.chunks.append(chunk)
        return outcome


def run(settings: Settings, mode: str, directory: Path, scenario: Callable[[Replayed], Awaitable[T]]) -> T:
    """`scenario(replayed)` in a fresh event loop, the client closed in that loop."""

    async def main() -> T:
        replayed = Replayed(settings, mode, directory)
        try:
            return await scenario(replayed)
        finally:
            await replayed.client.aclose()

    return asyncio.run(main())
