"""AnthropicProvider against a real HTTP server on 127.0.0.1 speaking the Anthropic Messages wire format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from upstreams import AnthropicUpstream, Fault, collect, run_closing

from keel.errors import (
    InvalidRequest,
    MissingCredentials,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    UnexpectedResponse,
)
from keel.providers.anthropic import AnthropicProvider
from keel.settings import ProviderSettings
from keel.types import ChatRequest, ResponseFormat

REQUEST = ChatRequest(messages=[{"role": "user", "content": "hello there"}])
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicUpstream]:
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "sk-ant-test")
    with AnthropicUpstream() as upstream:
        yield upstream


def provider(up: AnthropicUpstream, **settings: Any) -> AnthropicProvider:
    settings.setdefault("api_key_env", "ANTHROPIC_TEST_KEY")
    return AnthropicProvider("claude", ProviderSettings(type="anthropic", base_url=up.base_url, **settings))


def complete(up: AnthropicUpstream, request: ChatRequest = REQUEST, **settings: Any):
    return run_closing(provider(up, **settings), lambda p: p.complete(request, "claude-test"))


def stream(up: AnthropicUpstream, request: ChatRequest = REQUEST, **settings: Any):
    return run_closing(provider(up, **settings), lambda p: collect(p.stream(request, "claude-test")))


def schema_request(schema: dict[str, Any], name: str = "person") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": "who?"}],
                       response_format=ResponseFormat.from_schema(schema, name=name))


# -- translation ---------------------------------------------------------------------------------


def test_request_is_translated_to_the_messages_api(up: AnthropicUpstream) -> None:
    request = ChatRequest(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "developer", "content": "Use English."},
                  {"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"},
                  {"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
        temperature=0.5, top_p=0.9, stop="END",
    )
    answer = complete(up, request)
    sent = up.requests[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test" and sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.body == {
        "model": "claude-test", "max_tokens": 1024, "system": "Be brief.\n\nUse English.",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"},
                     {"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
        "temperature": 0.5, "top_p": 0.9, "stop_sequences": ["END"],
    }
    assert answer.message == {"role": "assistant", "content": "Echo: hello there"}
    assert (answer.model, answer.finish_reason, answer.id) == ("claude-test", "stop", "msg_upstream_1")


def test_token_limit_becomes_max_tokens(up: AnthropicUpstream) -> None:
    complete(up, ChatRequest(messages=REQUEST.messages, max_completion_tokens=50))
    assert up.requests[0].body["max_tokens"] == 50


def test_anthropic_fields_are_forwarded_and_openai_only_fields_dropped(up: AnthropicUpstream) -> None:
    complete(up, ChatRequest(messages=REQUEST.messages, top_k=5, metadata={"user_id": "u1"}, n=1, user="u1"))
    body = up.requests[0].body
    assert (body["top_k"], body["metadata"]) == (5, {"user_id": "u1"})
    assert "n" not in body and "user" not in body


def test_image_parts_become_image_blocks(up: AnthropicUpstream) -> None:
    parts = [{"type": "text", "text": "what is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
             {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]
    complete(up, ChatRequest(messages=[{"role": "user", "content": parts}]))
    assert up.requests[0].body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize("extra", [
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
    {"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "42", "tool_call_id": "c1"}]},
])
def test_untranslatable_requests_are_refused_before_sending(up: AnthropicUpstream, extra: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match="not translated"):
        complete(up, ChatRequest.model_validate({"messages": REQUEST.messages, **extra}))
    assert up.count == 0


def test_stop_sequence_maps_to_stop(up: AnthropicUpstream) -> None:
    up.reply = "alpha beta gamma delta"
    answer = complete(up, ChatRequest(messages=REQUEST.messages, stop=["gamma"]))
    assert (answer.content, answer.finish_reason) == ("alpha beta ", "stop")


def test_max_tokens_maps_to_length(up: AnthropicUpstream) -> None:
    up.reply = "alpha beta gamma delta"
    answer = complete(up, ChatRequest(messages=REQUEST.messages, max_tokens=2))
    assert (answer.content, answer.finish_reason) == ("alpha beta", "length")
    chunks = stream(up, ChatRequest(messages=REQUEST.messages, max_tokens=2))
    assert chunks[-1].finish_reason == "length"


def test_usage_counts_cached_input_as_prompt_and_cached(up: AnthropicUpstream) -> None:
    up.cached_tokens = 7
    usage = complete(up).usage
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (2 + 7, 7, 3)
    assert stream(up)[-1].usage == usage


def test_json_schema_goes_through_a_forced_tool(up: AnthropicUpstream) -> None:
    up.tool_input = {"name": "Ada", "age": 36}
    answer = complete(up, schema_request(SCHEMA))
    body = up.requests[0].body
    assert body["tools"] == [{"name": "person", "description": "Give the answer as this tool's input.",
                              "input_schema": SCHEMA}]
    assert body["tool_choice"] == {"type": "tool", "name": "person"}
    assert orjson.loads(answer.content) == {"name": "Ada", "age": 36}
    assert answer.finish_reason == "stop"


def test_a_non_object_schema_travels_wrapped(up: AnthropicUpstream) -> None:
    schema = {"type": "array", "items": {"type": "integer"}}
    up.tool_input = {"value": [1, 2, 3]}
    assert complete(up, schema_request(schema, name="numbers list")).content == "[1,2,3]"
    sent = up.requests[0].body["tools"][0]
    assert sent["name"] == "numbers_list" and sent["input_schema"]["properties"]["value"] == schema
    assert "".join(c.text for c in stream(up, schema_request(schema))) == "[1,2,3]"


# -- streaming ---------------------------------------------------------------------------------


def test_stream_text_concatenates_and_ends_with_usage(up: AnthropicUpstream) -> None:
    chunks = stream(up)
    assert chunks[0].delta == {"role": "assistant", "content": ""}
    assert "".join(c.text for c in chunks) == "Echo: hello there"
    assert [c.usage is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    last = chunks[-1]
    assert last.finish_reason == "stop" and (last.usage.prompt_tokens, last.usage.completion_tokens) == (2, 3)
    assert {(c.id, c.model) for c in chunks} == {("msg_upstream_1", "claude-test")}
    assert up.requests[0].body["stream"] is True


def test_stream_schema_answer_is_the_tool_input_json(up: AnthropicUpstream) -> None:
    chunks = stream(up, schema_request(SCHEMA))
    assert orjson.loads("".join(c.text for c in chunks)) == {"name": "", "age": 0}
    assert chunks[-1].finish_reason == "stop"


def test_error_event_mid_stream_raises(up: AnthropicUpstream) -> None:
    up.script(Fault.ERROR_EVENT)
    seen: list[str] = []

    async def read(p: AnthropicProvider) -> None:
        async for chunk in p.stream(REQUEST, "claude-test"):
            seen.append(chunk.text)

    with pytest.raises(ProviderError, match="overloaded_error: scripted error mid-stream") as caught:
        run_closing(provider(up), read)
    assert isinstance(caught.value, ServerError) and caught.value.retryable
    assert "".join(seen) == "Echo: "


# -- failures -----------------------------------------------------------------------------------


def test_overloaded_529_is_a_retryable_server_error(up: AnthropicUpstream) -> None:
    up.script(Fault.ERROR, status=529)
    with pytest.raises(ServerError) as caught:
        complete(up)
    error = caught.value
    assert (error.status, error.provider, error.retryable) == (529, "claude", True)
    assert "overloaded_error: scripted upstream failure" in str(error)


def test_rate_limit_carries_retry_after(up: AnthropicUpstream) -> None:
    up.script(Fault.RATE_LIMIT, times=2, retry_after=3)
    for call in (complete, stream):
        with pytest.raises(RateLimited) as caught:
            call(up)
        assert (caught.value.retry_after, caught.value.status) == (3.0, 429)


def test_invalid_request_carries_the_upstream_message(up: AnthropicUpstream) -> None:
    up.script(Fault.ERROR, status=400)
    with pytest.raises(InvalidRequest, match="invalid_request_error: scripted upstream failure"):
        complete(up)


@pytest.mark.parametrize("fault", [Fault.HANG, Fault.STALL])
def test_silence_times_out(up: AnthropicUpstream, fault: Fault) -> None:
    up.script(fault, times=2)
    with pytest.raises(ProviderTimeout):
        complete(up, timeout=0.2)
    with pytest.raises(ProviderTimeout):
        stream(up, timeout=0.2)


@pytest.mark.parametrize("fault", [Fault.MALFORMED_JSON, Fault.WRONG_SHAPE, Fault.STREAM_CUT])
def test_broken_answers_are_unexpected_responses(up: AnthropicUpstream, fault: Fault) -> None:
    up.script(fault, times=2)
    with pytest.raises(UnexpectedResponse):
        complete(up)
    with pytest.raises(UnexpectedResponse):
        stream(up)


def test_a_stream_ending_before_message_stop_is_cut(up: AnthropicUpstream) -> None:
    up.script(Fault.STREAM_CUT, clean=True)
    with pytest.raises(UnexpectedResponse, match="ended before its final event"):
        stream(up)


def test_missing_api_key_names_the_variable(up: AnthropicUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_TEST_KEY")
    for call in (complete, stream):
        with pytest.raises(MissingCredentials) as caught:
            call(up)
        assert caught.value.env_var == "ANTHROPIC_TEST_KEY"
    assert up.count == 0


def test_the_real_api_is_refused_while_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "sk-ant-test")
    remote = AnthropicProvider("claude", ProviderSettings(type="anthropic", api_key_env="ANTHROPIC_TEST_KEY"))
    with pytest.raises(ProviderConnectionError, match="'api.anthropic.com'.*KEEL_BLOCK_REMOTE"):
        run_closing(remote, lambda p: p.complete(REQUEST, "claude-test"))
