"""Anthropic's Messages API over plain HTTP (no SDK): POST {base_url}/v1/messages.

Translation from Keel's OpenAI-shaped request and back:

    system / developer messages   -> top-level `system` (joined by blank lines)
    max_tokens / max_completion   -> `max_tokens` (required by Anthropic; 1024 when not given)
    temperature, top_p, stop      -> temperature, top_p, stop_sequences
    response_format json_schema   -> one tool whose input_schema is the schema, forced by tool_choice;
                                     its input JSON becomes the assistant content (a non-object
                                     schema travels wrapped as {"value": ...})
    text blocks                   -> the assistant content, joined
    stop_reason                   -> finish_reason: end_turn, stop_sequence -> stop;
                                     max_tokens -> length; tool_use -> tool_calls
    usage                         -> prompt = input + cache read + cache creation; cached = cache read

OpenAI `tools` and `tool` messages are not translated: such requests fail with InvalidRequest.
Of the other fields Keel does not interpret, only Anthropic's own (top_k, metadata, ...) are sent.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import InvalidRequest
from ..settings import ProviderSettings
from ..types import ChatRequest, ChatResponse, Chunk, Message, Usage
from ._http import HTTPClient, SSEEvent, api_key, error_from_payload, expect_shape, parse_json
from .base import Capabilities, Provider

DEFAULT_BASE_URL = "https://api.anthropic.com"
PATH = "/v1/messages"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
NATIVE_FIELDS = ("top_k", "metadata", "thinking", "service_tier")


class AnthropicProvider(Provider):
    kind = "anthropic"
    capabilities = Capabilities(streaming=True, json_schema=True, tools=False)

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self._http = HTTPClient(name, settings, DEFAULT_BASE_URL)

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        tool = SchemaTool.of(request)
        body = self._body(request, model, tool)
        payload = await self._http.post_json(PATH, body, self._auth())
        with expect_shape(self.name, payload):
            return _response(payload, tool)

    async def stream(self, request: ChatRequest, model: str) -> AsyncIterator[Chunk]:
        tool = SchemaTool.of(request)
        body = {**self._body(request, model, tool), "stream": True}
        state = _StreamState(tool)
        events = self._http.post_sse(PATH, body, self._auth(), is_final=lambda e: e.event == "message_stop")
        async with aclosing(events):
            async for event in events:
                for chunk in self._chunks(state, event):
                    yield chunk

    def describe(self, model: str) -> str:
        return f"Anthropic model {model} at {self._http.base_url}"

    async def aclose(self) -> None:
        await self._http.aclose()

    def _auth(self) -> dict[str, str]:
        key = api_key(self.settings, self.name)
        headers = {"anthropic-version": API_VERSION}
        return {**headers, "x-api-key": key} if key else headers

    def _body(self, request: ChatRequest, model: str, tool: SchemaTool | None) -> dict[str, Any]:
        extras = request.passthrough
        if "tools" in extras or "functions" in extras:
            raise self._refuse("OpenAI `tools` are not translated to Anthropic yet")
        system = [m.text() for m in request.messages if m.role in ("system", "developer")]
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": request.token_limit or DEFAULT_MAX_TOKENS,
            "messages": [self._message(m) for m in request.messages if m.role not in ("system", "developer")],
        }
        if system:
            body["system"] = "\n\n".join(system)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
        body.update({k: v for k, v in extras.items() if k in NATIVE_FIELDS})
        if tool is not None:
            body.update(tool.request_fields())
        return body

    def _message(self, message: Message) -> dict[str, Any]:
        if message.role not in ("user", "assistant"):
            raise self._refuse(f"{message.role!r} messages are not translated to Anthropic yet")
        content = message.content
        if isinstance(content, list):
            content = [_block(part) for part in content]
        return {"role": message.role, "content": content or ""}

    def _refuse(self, why: str) -> InvalidRequest:
        return InvalidRequest(f"{self.name}: {why}; use an OpenAI-compatible provider for this request.",
                              provider=self.name)

    def _chunks(self, state: _StreamState, event: SSEEvent) -> list[Chunk]:
        payload = parse_json(self.name, event.data)
        if payload.get("type") == "error" or event.event == "error":
            raise error_from_payload(self.name, payload)
        with expect_shape(self.name, payload):
            return state.chunks(payload)


@dataclass(frozen=True)
class SchemaTool:
    """A JSON-schema request as Anthropic tool use: the tool's input is the answer."""

    name: str
    input_schema: dict[str, Any]
    wrapped: bool

    @classmethod
    def of(cls, request: ChatRequest) -> SchemaTool | None:
        schema = request.json_schema
        if schema is None:
            return None
        fmt = request.response_format.json_schema if request.response_format else None
        name = re.sub(r"[^a-zA-Z0-9_-]", "_", fmt.name if fmt else "")[:64] or "output"
        if schema.get("type") == "object":
            return cls(name, schema, wrapped=False)
        return cls(name, {"type": "object", "properties": {"value": schema}, "required": ["value"]}, wrapped=True)

    def request_fields(self) -> dict[str, Any]:
        tool = {"name": self.name, "description": "Give the answer as this tool's input.",
                "input_schema": self.input_schema}
        return {"tools": [tool], "tool_choice": {"type": "tool", "name": self.name}}

    def answer(self, tool_input: Any) -> str:
        return orjson.dumps(tool_input["value"] if self.wrapped else tool_input).decode()


def _block(part: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI content part as an Anthropic content block (text and images; others as given)."""
    if part.get("type") == "image_url":
        url = part["image_url"]["url"] if isinstance(part.get("image_url"), dict) else part.get("image_url")
        if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
            media_type, data = url[5:].split(";base64,", 1)
            return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    return part


def _response(payload: dict[str, Any], tool: SchemaTool | None) -> ChatResponse:
    blocks = payload["content"]
    stop_reason = payload.get("stop_reason")
    if tool is not None:
        content = tool.answer(_tool_input(blocks, tool.name))
        finish = "stop" if stop_reason == "tool_use" else FINISH_REASONS.get(stop_reason, stop_reason)
    else:
        content = "".join(block["text"] for block in blocks if block["type"] == "text")
        finish = FINISH_REASONS.get(stop_reason, stop_reason)
    return ChatResponse(
        id=payload.get("id") or "",
        model=payload.get("model") or "",
        message={"role": "assistant", "content": content},
        finish_reason=finish,
        usage=_usage(payload["usage"]),
        created=int(time.time()),
    )


def _tool_input(blocks: list[dict[str, Any]], name: str) -> Any:
    for block in blocks:
        if block["type"] == "tool_use" and block.get("name") == name:
            return block["input"]
    raise KeyError(f"no tool_use block for {name!r}")


def _usage(raw: dict[str, Any]) -> Usage:
    read = raw.get("cache_read_input_tokens") or 0
    written = raw.get("cache_creation_input_tokens") or 0
    return Usage(
        prompt_tokens=(raw.get("input_tokens") or 0) + read + written,
        completion_tokens=raw.get("output_tokens") or 0,
        cached_tokens=read,
    )


class _StreamState:
    """Anthropic stream events -> keel Chunks; the last chunk (at message_stop) carries usage."""

    def __init__(self, tool: SchemaTool | None) -> None:
        self.tool = tool
        self.id = self.model = ""
        self.created = int(time.time())
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.tool_json: list[str] = []

    def chunks(self, payload: dict[str, Any]) -> list[Chunk]:
        handler = getattr(self, "_on_" + str(payload["type"]), None)
        return handler(payload) if handler else []  # ping and future event types: nothing to say

    def _chunk(self, **fields: Any) -> Chunk:
        return Chunk(id=self.id, model=self.model, created=self.created, **fields)

    def _on_message_start(self, payload: dict[str, Any]) -> list[Chunk]:
        message = payload["message"]
        self.id, self.model = message.get("id") or "", message.get("model") or ""
        self._add_usage(message.get("usage"))
        return [self._chunk(delta={"role": "assistant", "content": ""})]

    def _on_content_block_start(self, payload: dict[str, Any]) -> list[Chunk]:
        block = payload["content_block"]
        if block["type"] == "text" and block.get("text") and self.tool is None:
            return [self._chunk(delta={"content": block["text"]})]
        return []

    def _on_content_block_delta(self, payload: dict[str, Any]) -> list[Chunk]:
        delta = payload["delta"]
        if delta["type"] == "text_delta" and self.tool is None:
            return [self._chunk(delta={"content": delta["text"]})]
        if delta["type"] == "input_json_delta" and self.tool is not None:
            if self.tool.wrapped:  # unwrapped at the block's end
                self.tool_json.append(delta["partial_json"])
                return []
            return [self._chunk(delta={"content": delta["partial_json"]})]
        return []

    def _on_content_block_stop(self, payload: dict[str, Any]) -> list[Chunk]:
        if not self.tool_json or self.tool is None:
            return []
        text = self.tool.answer(orjson.loads("".join(self.tool_json)))
        self.tool_json = []
        return [self._chunk(delta={"content": text})]

    def _on_message_delta(self, payload: dict[str, Any]) -> list[Chunk]:
        self.stop_reason = payload["delta"].get("stop_reason") or self.stop_reason
        self._add_usage(payload.get("usage"))
        return []

    def _on_message_stop(self, payload: dict[str, Any]) -> list[Chunk]:
        reason = self.stop_reason
        finish = "stop" if self.tool is not None and reason == "tool_use" else FINISH_REASONS.get(reason, reason)
        return [self._chunk(finish_reason=finish, usage=_usage(self.usage))]

    def _add_usage(self, usage: dict[str, Any] | None) -> None:
        self.usage.update({k: v for k, v in (usage or {}).items() if v is not None})
