"""The provider interface: who runs a model, where, and how to talk to it.

A provider instance is created once per entry under [providers] in keel.toml. It is given the
upstream model id per call, so one OpenAI-compatible provider serves every model of its endpoint.
Cross-cutting behaviour (retries, fallback, circuit breaking, tracing) wraps providers and keeps
this same interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..settings import ProviderSettings
from ..types import ChatRequest, ChatResponse, Chunk


@dataclass(frozen=True)
class Capabilities:
    streaming: bool = True
    #: The provider enforces a JSON schema natively (API json_schema mode, tool use, or grammar).
    json_schema: bool = False
    tools: bool = False


class Provider(ABC):
    #: The `type` this class answers to in keel.toml.
    kind: str = ""
    capabilities: Capabilities = Capabilities()

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.settings = settings

    @property
    def region(self) -> str | None:
        return self.settings.region

    @property
    def jurisdiction(self) -> str | None:
        return self.settings.jurisdiction

    @abstractmethod
    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        """Answer `request` with the upstream model `model`. Raises ProviderError subclasses."""

    @abstractmethod
    def stream(self, request: ChatRequest, model: str) -> AsyncIterator[Chunk]:
        """Stream the answer. The last chunk carries usage when the upstream reports it."""

    async def fingerprint(self, model: str) -> str | None:
        """A stable identity of the exact weights/snapshot behind `model`, when knowable."""
        return None

    async def count_prompt_tokens(self, messages: list[dict[str, Any]], model: str) -> int | None:
        """Prompt tokens of these messages by the model's own tokenizer; None when not knowable offline."""
        return None

    async def count_text_tokens(self, text: str, model: str) -> int | None:
        """Tokens of an answer's text by the model's own tokenizer; None when not knowable offline."""
        return None

    def describe(self, model: str) -> str:
        """One line for `keel models`: what this model is and what it is good for."""
        return f"{self.kind} model {model}"

    async def aclose(self) -> None:
        """Release connections, threads or loaded weights."""
