"""The Anthropic Messages wire format: JSON answers and the typed SSE event sequence."""

from __future__ import annotations

from typing import Any

import orjson

from ._server import Answer, Upstream, text_of, words_of

STOP_REASONS = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens", "tool": "tool_use"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


class AnthropicUpstream(Upstream):
    """POST /v1/messages; `base_url` is the bare host, as for api.anthropic.com."""

    route = "/v1/messages"

    def answer(self, body: dict[str, Any]) -> Answer:
        messages = body.get("messages") or []
        prompt_words = len(text_of(body.get("system")).split())
        prompt_words += sum(len(text_of(m.get("content")).split()) for m in messages)
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {}
        forced = [t for t in tools if choice.get("type") == "tool" and t.get("name") == choice.get("name")]
        tool = (forced or tools or [None])[0]
        if tool is not None:
            return self.tool_answer(tool["name"], tool.get("input_schema") or {}, prompt_words)
        user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        return self.compose(text_of(user.get("content")), prompt_words, body.get("stop_sequences"),
                            body.get("max_tokens"))

    def completion(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        if answer.tool is None:
            content = [{"type": "text", "text": answer.text}]
        else:
            content = [{"type": "tool_use", "id": "toolu_upstream_1", **answer.tool}]
        return {**self._message(body, answer), "content": content, "usage": self._usage(answer)}

    def stream_frames(self, body: dict[str, Any], answer: Answer) -> list[bytes]:
        start = {**self._message(body, answer), "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {**self._usage(answer), "output_tokens": 1}}
        if answer.tool is None:
            block: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in words_of(answer.text)]
        else:
            block = {"type": "tool_use", "id": "toolu_upstream_1", "name": answer.tool["name"], "input": {}}
            json = orjson.dumps(answer.tool["input"]).decode()
            half = len(json) // 2
            deltas = [{"type": "input_json_delta", "partial_json": part} for part in (json[:half], json[half:])]
        events = [
            {"type": "message_start", "message": start},
            {"type": "content_block_start", "index": 0, "content_block": block},
            {"type": "ping"},
            *({"type": "content_block_delta", "index": 0, "delta": delta} for delta in deltas),
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": STOP_REASONS[answer.finish],
                                                "stop_sequence": answer.meta.get("stop_sequence")},
             "usage": {"output_tokens": answer.completion_tokens}},
            {"type": "message_stop"},
        ]
        return [self.frame(event, event["type"]) for event in events]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}

    def error_frame(self, message: str) -> bytes:
        return self.frame({"type": "error", "error": {"type": "overloaded_error", "message": message}}, "error")

    def _message(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        return {"id": f"msg_upstream_{self.count}", "type": "message", "role": "assistant",
                "model": body.get("model", ""), "stop_reason": STOP_REASONS[answer.finish],
                "stop_sequence": answer.meta.get("stop_sequence")}

    def _usage(self, answer: Answer) -> dict[str, Any]:
        return {"input_tokens": answer.prompt_tokens, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": self.cached_tokens, "output_tokens": answer.completion_tokens}
