"""A deterministic provider for tests, shipped in the library (like httpx's MockTransport).

Without queued replies it echoes the last user message, or, when a JSON schema is asked for,
answers with the smallest instance of that schema. Queue replies or exceptions with `queue()`;
every request it saw is in `history`.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..types import ChatRequest, ChatResponse, Chunk, Usage
from .base import Capabilities, Provider


class FakeProvider(Provider):
    kind = "fake"
    capabilities = Capabilities(streaming=True, json_schema=True, tools=False)

    def __init__(self, name: str, settings: Any) -> None:
        super().__init__(name, settings)
        self.history: list[tuple[str, ChatRequest]] = []
        self._queued: deque[str | BaseException] = deque()

    def queue(self, *replies: str | BaseException) -> None:
        """Answer the next calls with these texts, or raise these exceptions, in order."""
        self._queued.extend(replies)

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        text = self._answer(request, model)
        return ChatResponse(
            id="fake-" + _digest(text)[:12],
            model=model,
            message={"role": "assistant", "content": text},
            finish_reason="stop",
            usage=_usage(request, text),
            system_fingerprint="fake-" + _digest(model)[:8],
        )

    async def stream(self, request: ChatRequest, model: str) -> AsyncIterator[Chunk]:
        text = self._answer(request, model)
        ident = "fake-" + _digest(text)[:12]
        words = text.split(" ")
        for index, word in enumerate(words):
            piece = word if index == len(words) - 1 else word + " "
            yield Chunk(id=ident, model=model, delta={"content": piece})
        yield Chunk(id=ident, model=model, finish_reason="stop", usage=_usage(request, text))

    async def fingerprint(self, model: str) -> str | None:
        return "fake-" + _digest(model)[:8]

    def describe(self, model: str) -> str:
        return "deterministic fake: echoes input or fills the schema (for tests)"

    def _answer(self, request: ChatRequest, model: str) -> str:
        self.history.append((model, request))
        if self._queued:
            reply = self._queued.popleft()
            if isinstance(reply, BaseException):
                raise reply
            return reply
        schema = request.json_schema
        if schema is not None:
            return orjson.dumps(minimal_instance(schema)).decode()
        last_user = next((m for m in reversed(request.messages) if m.role == "user"), None)
        return "Echo: " + (last_user.text() if last_user else "")


def minimal_instance(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """The smallest value that satisfies a (simple) JSON schema: deterministic, for tests.
    Local `$ref`s (`#/$defs/Name`, as Pydantic writes them) are followed."""
    root = schema if root is None else root
    if "$ref" in schema:
        return minimal_instance(_follow(schema["$ref"], root), root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0], root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: minimal_instance(props.get(k, {}), root) for k in schema.get("required", list(props))}
    if kind == "array":
        return [minimal_instance(schema.get("items", {}), root) for _ in range(schema.get("minItems", 0))]
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "x" * schema.get("minLength", 0)


def _follow(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _usage(request: ChatRequest, text: str) -> Usage:
    prompt = sum(len(m.text().split()) for m in request.messages)
    return Usage(prompt_tokens=prompt, completion_tokens=len(text.split()))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
