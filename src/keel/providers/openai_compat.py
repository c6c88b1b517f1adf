"""Any OpenAI-compatible chat-completions endpoint: OpenAI, Azure OpenAI, Mistral, vLLM, Ollama, llama.cpp.

Who and where come from ProviderSettings: `base_url`, the key in `api_key_env` (sent as
`Authorization: Bearer`), extra `headers` (e.g. Azure's `api-key`). The wire format is OpenAI's,
so fields Keel does not interpret (tools, tool_choice, n, logprobs, user, vendor extras) are sent
untouched and the assistant message (tool calls included) comes back exactly as the upstream sent it.
Choice 0 is what Keel reads; `raw` keeps the whole body, which the gateway returns verbatim. Streams always ask for the usage chunk (`stream_options.include_usage`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from ..settings import ProviderSettings
from ..types import ChatRequest, ChatResponse, Chunk, Usage
from ._http import HTTPClient, SSEEvent, api_key, error_from_payload, expect_shape, parse_json
from .base import Capabilities, Provider

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PATH = "/chat/completions"


class OpenAICompatProvider(Provider):
    kind = "openai"
    capabilities = Capabilities(streaming=True, json_schema=True, tools=True)

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self._http = HTTPClient(name, settings, DEFAULT_BASE_URL)

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        body = request.to_openai(model)
        body["stream"] = False
        body.pop("stream_options", None)  # OpenAI rejects stream_options without stream
        payload = await self._http.post_json(PATH, body, self._auth())
        with expect_shape(self.name, payload):
            return _response(payload)

    async def stream(self, request: ChatRequest, model: str) -> AsyncIterator[Chunk]:
        body = request.to_openai(model)
        body["stream"] = True
        body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
        events = self._http.post_sse(PATH, body, self._auth(), is_final=_is_done)
        async with aclosing(events):
            async for event in events:
                chunk = None if _is_done(event) else self._chunk(event)
                if chunk is not None:
                    yield chunk

    async def count_prompt_tokens(self, messages: list[dict[str, Any]], model: str) -> int | None:
        from ..tokenizers import count_openai_messages

        return count_openai_messages(messages, model)

    async def count_text_tokens(self, text: str, model: str) -> int | None:
        from ..tokenizers import count_openai_text

        return count_openai_text(text, model)

    def describe(self, model: str) -> str:
        return f"{model} at the OpenAI-compatible endpoint {self._http.base_url}"

    async def aclose(self) -> None:
        await self._http.aclose()

    def _auth(self) -> dict[str, str]:
        key = api_key(self.settings, self.name)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _chunk(self, event: SSEEvent) -> Chunk:
        payload = parse_json(self.name, event.data)
        if "error" in payload:
            raise error_from_payload(self.name, payload)
        with expect_shape(self.name, payload):
            return _chunk(payload)


def _is_done(event: SSEEvent) -> bool:
    return event.data.strip() == "[DONE]"


def _response(payload: dict[str, Any]) -> ChatResponse:
    choice = payload["choices"][0]
    return ChatResponse(
        id=payload.get("id") or "",
        model=payload.get("model") or "",
        message=choice["message"],
        finish_reason=choice.get("finish_reason"),
        usage=_usage(payload.get("usage")),
        system_fingerprint=payload.get("system_fingerprint"),
        created=payload.get("created") or 0,
        raw=payload,
    )


def _chunk(payload: dict[str, Any]) -> Chunk:
    """A keel Chunk: choice 0's delta and the usage; `raw` keeps every choice for the gateway."""
    choice = next((c for c in payload["choices"] if c.get("index", 0) == 0), None)
    usage = payload.get("usage")
    return Chunk(
        id=payload.get("id") or "",
        model=payload.get("model") or "",
        delta=(choice.get("delta") or {}) if choice else {},
        finish_reason=choice.get("finish_reason") if choice else None,
        usage=_usage(usage) if usage else None,
        system_fingerprint=payload.get("system_fingerprint"),
        created=payload.get("created") or 0,
        raw=payload,
    )


def _usage(raw: dict[str, Any] | None) -> Usage:
    if not raw:
        return Usage()
    details = raw.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=raw.get("prompt_tokens") or 0,
        completion_tokens=raw.get("completion_tokens") or 0,
        cached_tokens=details.get("cached_tokens") or 0,
    )
