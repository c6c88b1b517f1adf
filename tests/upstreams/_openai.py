"""The OpenAI chat-completions wire format: JSON answers, SSE chunks with a usage chunk and [DONE]."""

from __future__ import annotations

from typing import Any

import orjson

from keel.providers.fake import minimal_instance

from ._server import Answer, Upstream, text_of, words_of

CREATED = 1_700_000_000
FINGERPRINT = "fp_upstream"
FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool": "tool_calls"}
ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
               429: "requests"}


class OpenAIUpstream(Upstream):
    """POST /v1/chat/completions; `base_url` ends in /v1 as OpenAI clients expect."""

    route = "/v1/chat/completions"
    api_prefix = "/v1"

    def answer(self, body: dict[str, Any]) -> Answer:
        messages = body.get("messages") or []
        prompt_words = sum(len(text_of(m.get("content")).split()) for m in messages)
        tools = body.get("tools") or []
        if tools:
            function = tools[0]["function"]
            return self.tool_answer(function["name"], function.get("parameters") or {}, prompt_words)
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema" and self.reply is None:
            text = orjson.dumps(minimal_instance(fmt["json_schema"].get("schema") or {})).decode()
            return Answer(text=text, prompt_tokens=prompt_words, completion_tokens=len(text.split()))
        user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        return self.compose(text_of(user.get("content")), prompt_words, body.get("stop"), limit)

    def completion(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        choice = {"index": 0, "message": self.message(answer), "logprobs": None,
                  "finish_reason": FINISH[answer.finish]}
        return {**self._head(body, "chat.completion"), "choices": [choice], "usage": self._usage(answer)}

    def message(self, answer: Answer) -> dict[str, Any]:
        """The assistant message this upstream sends for `answer`."""
        if answer.tool is None:
            return {"role": "assistant", "content": answer.text, "refusal": None}
        call = {"id": "call_upstream_1", "type": "function",
                "function": {"name": answer.tool["name"], "arguments": orjson.dumps(answer.tool["input"]).decode()}}
        return {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}

    def stream_frames(self, body: dict[str, Any], answer: Answer) -> list[bytes]:
        head = self._head(body, "chat.completion.chunk")
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            return self.frame({**payload, "usage": None} if with_usage else payload)

        frames = [b": keep-alive\n\n", chunk({"role": "assistant", "content": ""})]
        if answer.tool is None:
            frames += [chunk({"content": piece}) for piece in words_of(answer.text)]
        else:
            call = self.message(answer)["tool_calls"][0]
            arguments = call["function"]["arguments"]
            frames.append(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                 "function": {"name": call["function"]["name"], "arguments": ""}}]}))
            frames.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}))
        frames.append(chunk({}, FINISH[answer.finish]))
        if with_usage:
            frames.append(self.frame({**head, "choices": [], "usage": self._usage(answer)}))
        return frames + [b"data: [DONE]\n\n"]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = ERROR_TYPES.get(status, "server_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def error_frame(self, message: str) -> bytes:
        return self.frame({"error": {"message": message, "type": "server_error", "param": None, "code": None}})

    def _head(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        return {"id": f"chatcmpl-upstream-{self.count}", "object": kind, "created": CREATED,
                "model": body.get("model", ""), "system_fingerprint": FINGERPRINT}

    def _usage(self, answer: Answer) -> dict[str, Any]:
        return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                "total_tokens": answer.prompt_tokens + answer.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": self.cached_tokens}}
