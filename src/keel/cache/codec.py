"""Answers as data and back, and streams: assembled into one answer, or played from one.

Shared by the cache (which stores an answer once, plain or streamed, and can serve it either
way) and replay (which records exchanges to files).

    StreamAssembler   chunks in → the answer they make up (text, tool calls, finish, usage)
    replay_chunks     an answer (and, if known, the texts it was streamed in) → chunks
"""

from __future__ import annotations

from typing import Any

from ..types import ChatResponse, Chunk, Usage


class StreamAssembler:
    """Collects a stream's chunks; `response()` is the answer they make up, `texts` their texts."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.head = Chunk()

    def add(self, chunk: Chunk) -> None:
        if not self.head.id and not self.head.model:
            self.head = chunk
        if chunk.text:
            self.texts.append(chunk.text)
        for delta in chunk.delta.get("tool_calls") or []:
            self._add_tool_call(delta)
        self.finish_reason = chunk.finish_reason or self.finish_reason
        self.usage = chunk.usage or self.usage

    @property
    def finished(self) -> bool:
        """Whether the stream ended with a finish reason (a cut stream does not)."""
        return self.finish_reason is not None

    def response(self, provider: str) -> ChatResponse:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.texts)}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[index] for index in sorted(self.tool_calls)]
            message["content"] = message["content"] or None
        head = self.head
        return ChatResponse(
            id=head.id, model=head.model, message=message, finish_reason=self.finish_reason,
            usage=self.usage or Usage(), system_fingerprint=head.system_fingerprint, created=head.created,
            provider=provider,
        )

    def _add_tool_call(self, delta: dict[str, Any]) -> None:
        call = self.tool_calls.setdefault(delta.get("index", 0), {"function": {"name": "", "arguments": ""}})
        for field in ("id", "type"):
            if delta.get(field):
                call[field] = delta[field]
        function = delta.get("function") or {}
        for field in ("name", "arguments"):
            call["function"][field] += function.get(field) or ""


def replay_chunks(response: ChatResponse, texts: list[str] | None = None) -> list[Chunk]:
    """The answer as a stream: its text (in `texts` if given, else one piece), its tool calls,
    then a last chunk with the finish reason and usage."""
    head = {"id": response.id, "model": response.model, "system_fingerprint": response.system_fingerprint,
            "created": response.created}
    if texts is None:
        texts = [response.content] if response.content else []
    deltas: list[dict[str, Any]] = [{"content": text} for text in texts]
    tool_calls = response.message.get("tool_calls")
    if tool_calls:
        deltas.append({"tool_calls": [{"index": i, **call} for i, call in enumerate(tool_calls)]})
    deltas = deltas or [{"content": ""}]
    deltas[0] = {"role": "assistant", **deltas[0]}
    chunks = [Chunk(delta=delta, **head) for delta in deltas]
    chunks.append(Chunk(finish_reason=response.finish_reason, usage=response.usage, **head))
    return chunks
