"""OpenAICompatProvider against a real HTTP server on 127.0.0.1 speaking the OpenAI wire format.

Also covers the shared machinery in keel.providers._http (SSE decoding, Retry-After, loopback guard).
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from upstreams import Fault, OpenAIUpstream, collect, run_closing

from keel.errors import (
    AuthenticationFailed,
    InvalidRequest,
    MissingCredentials,
    ProviderConnectionError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    UnexpectedResponse,
)
from keel.providers._http import SSEDecoder, SSEEvent, is_loopback, parse_retry_after
from keel.providers.openai_compat import OpenAICompatProvider
from keel.settings import ProviderSettings
from keel.types import ChatRequest, ResponseFormat

REQUEST = ChatRequest(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}])
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


@pytest.fixture
def up() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as upstream:
        yield upstream


def provider(up: OpenAIUpstream, **settings: object) -> OpenAICompatProvider:
    return OpenAICompatProvider("up", ProviderSettings(type="openai", base_url=up.base_url, **settings))


def complete(up: OpenAIUpstream, request: ChatRequest = REQUEST, **settings: object):
    return run_closing(provider(up, **settings), lambda p: p.complete(request, "gpt-test"))


def stream(up: OpenAIUpstream, request: ChatRequest = REQUEST, **settings: object):
    return run_closing(provider(up, **settings), lambda p: collect(p.stream(request, "gpt-test")))


# -- the happy path ---------------------------------------------------------------------------


def test_complete_returns_the_upstream_answer(up: OpenAIUpstream) -> None:
    answer = complete(up)
    assert answer.content == "Echo: hello there"
    assert answer.message == {"role": "assistant", "content": "Echo: hello there", "refusal": None}
    assert (answer.model, answer.finish_reason, answer.system_fingerprint) == ("gpt-test", "stop", "fp_upstream")
    assert answer.id.startswith("chatcmpl-") and answer.created == 1_700_000_000
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (4, 3)
    sent = up.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {"model": "gpt-test", "stream": False, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]}


def test_credentials_and_configured_headers_are_sent(up: OpenAIUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_TEST_KEY", "sk-test")
    complete(up, api_key_env="UPSTREAM_TEST_KEY", headers={"api-key": "azure-key", "OpenAI-Organization": "org-1"})
    headers = up.requests[0].headers
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["api-key"] == "azure-key" and headers["openai-organization"] == "org-1"
    assert headers["content-type"] == "application/json"


def test_without_api_key_env_no_authorization_is_sent(up: OpenAIUpstream) -> None:
    complete(up)
    assert "authorization" not in up.requests[0].headers


def test_query_in_base_url_is_kept_for_azure_api_version(up: OpenAIUpstream) -> None:
    settings = ProviderSettings(type="openai", base_url=up.base_url + "?api-version=2024-10-21")
    run_closing(OpenAICompatProvider("azure", settings), lambda p: p.complete(REQUEST, "gpt-test"))
    assert up.requests[0].path == "/v1/chat/completions"
    assert up.requests[0].query == {"api-version": "2024-10-21"}


def test_stream_text_concatenates_and_the_last_chunk_has_usage(up: OpenAIUpstream) -> None:
    chunks = stream(up)
    assert chunks[0].delta == {"role": "assistant", "content": ""}
    assert "".join(c.text for c in chunks) == "Echo: hello there"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    assert [c.usage is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 3)
    assert {(c.id, c.model, c.system_fingerprint, c.created) for c in chunks} == {
        ("chatcmpl-upstream-1", "gpt-test", "fp_upstream", 1_700_000_000)}


def test_stream_always_asks_for_usage(up: OpenAIUpstream) -> None:
    stream(up, ChatRequest(messages=REQUEST.messages, stream_options={"include_usage": False}))
    body = up.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_fields_keel_does_not_interpret_pass_through_verbatim(up: OpenAIUpstream) -> None:
    extras = {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "n": 1,
              "user": "user-42", "logprobs": True, "top_logprobs": 2, "repetition_penalty": 1.1,
              "vendor_extra": {"nested": [1, {"deep": None}]}}
    request = ChatRequest(messages=[{"role": "user", "content": "weather?"}], seed=7, **extras)
    complete(up, request)
    stream(up, request)
    for sent in up.requests:
        assert {k: sent.body[k] for k in extras} == extras
        assert sent.body["seed"] == 7


def test_tool_calls_come_back_verbatim(up: OpenAIUpstream) -> None:
    up.tool_input = {"city": "Paris"}
    request = ChatRequest(messages=[{"role": "user", "content": "weather in Paris?"}], tools=TOOLS)
    answer = complete(up, request)
    assert answer.finish_reason == "tool_calls"
    assert answer.message == {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
        {"id": "call_upstream_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}


def test_streamed_tool_call_deltas_come_back_verbatim(up: OpenAIUpstream) -> None:
    request = ChatRequest(messages=[{"role": "user", "content": "weather?"}], tools=TOOLS)
    chunks = stream(up, request)
    calls = [c.delta["tool_calls"] for c in chunks if "tool_calls" in c.delta]
    assert calls == [
        [{"index": 0, "id": "call_upstream_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}],
        [{"index": 0, "function": {"arguments": '{"city":""}'}}],
    ]
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["tool_calls"]


def test_json_schema_request_is_sent_as_response_format(up: OpenAIUpstream) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    request = ChatRequest(messages=[{"role": "user", "content": "n?"}],
                          response_format=ResponseFormat.from_schema(schema, name="count"))
    assert complete(up, request).content == '{"n":0}'
    assert up.requests[0].body["response_format"] == {"type": "json_schema",
                                                      "json_schema": {"name": "count", "schema": schema}}


def test_cached_tokens_are_mapped(up: OpenAIUpstream) -> None:
    up.cached_tokens = 3
    assert complete(up).usage.cached_tokens == 3
    assert stream(up)[-1].usage.cached_tokens == 3


def test_connections_are_pooled_and_reused(up: OpenAIUpstream) -> None:
    async def twice(p: OpenAICompatProvider) -> None:
        await p.complete(REQUEST, "gpt-test")
        await p.complete(REQUEST, "gpt-test")

    run_closing(provider(up), twice)
    assert up.requests[0].peer == up.requests[1].peer


def test_one_provider_serves_successive_event_loops(up: OpenAIUpstream) -> None:
    reused = provider(up)
    asyncio.run(reused.complete(REQUEST, "gpt-test"))  # no aclose: the session closes as asyncio.run ends
    assert run_closing(reused, lambda p: p.complete(REQUEST, "gpt-test")).content == "Echo: hello there"
    gc.collect()  # an unclosed session or socket would warn here, and warnings are errors


def test_aclose_reaches_a_session_on_another_running_loop(up: OpenAIUpstream) -> None:
    shared = provider(up)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(shared.complete(REQUEST, "gpt-test"), loop).result(10)
        asyncio.run(shared.aclose())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    gc.collect()


def test_slow_first_byte_within_the_timeout_is_fine(up: OpenAIUpstream) -> None:
    up.script(Fault.SLOW, times=2, delay=0.05)
    assert complete(up, timeout=30).content == "Echo: hello there"
    assert "".join(c.text for c in stream(up, timeout=30)) == "Echo: hello there"


# -- failures -----------------------------------------------------------------------------------


def test_rate_limit_carries_retry_after(up: OpenAIUpstream) -> None:
    up.script(Fault.RATE_LIMIT, retry_after=3)
    with pytest.raises(RateLimited) as caught:
        complete(up)
    error = caught.value
    assert (error.retry_after, error.status, error.provider) == (3.0, 429, "up")
    assert "rate limit reached" in error.body and "rate limit reached" in str(error)


def test_rate_limit_on_a_stream(up: OpenAIUpstream) -> None:
    up.script(Fault.RATE_LIMIT, retry_after=3)
    with pytest.raises(RateLimited) as caught:
        stream(up)
    assert caught.value.retry_after == 3.0


def test_a_burst_of_server_errors_then_recovery(up: OpenAIUpstream) -> None:
    up.script(Fault.ERROR, times=2, status=503)
    for _ in range(2):
        with pytest.raises(ServerError) as caught:
            complete(up)
        assert caught.value.status == 503 and caught.value.retryable
    assert complete(up).content == "Echo: hello there"
    assert up.count == 3


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, InvalidRequest), (401, AuthenticationFailed), (403, AuthenticationFailed), (404, InvalidRequest),
     (422, InvalidRequest), (408, ProviderTimeout), (500, ServerError), (502, ServerError), (503, ServerError)],
)
def test_status_maps_to_a_typed_error(up: OpenAIUpstream, status: int, error_type: type) -> None:
    up.script(Fault.ERROR, status=status)
    with pytest.raises(error_type) as caught:
        complete(up)
    assert (caught.value.status, caught.value.provider) == (status, "up")
    assert "scripted upstream failure" in str(caught.value)


@pytest.mark.parametrize("fault", [Fault.HANG, Fault.STALL])
def test_silence_times_out(up: OpenAIUpstream, fault: Fault) -> None:
    up.script(fault, times=2)
    with pytest.raises(ProviderTimeout):
        complete(up, timeout=0.2)
    with pytest.raises(ProviderTimeout):
        stream(up, timeout=0.2)


@pytest.mark.parametrize("fault", [Fault.MALFORMED_JSON, Fault.WRONG_SHAPE, Fault.STREAM_CUT])
def test_broken_answers_are_unexpected_responses(up: OpenAIUpstream, fault: Fault) -> None:
    up.script(fault, times=2)
    with pytest.raises(UnexpectedResponse):
        complete(up)
    with pytest.raises(UnexpectedResponse):
        stream(up)


def test_a_stream_ending_before_done_is_cut(up: OpenAIUpstream) -> None:
    up.script(Fault.STREAM_CUT, clean=True)
    with pytest.raises(UnexpectedResponse, match="ended before its final event"):
        stream(up)


def test_an_error_event_mid_stream_raises(up: OpenAIUpstream) -> None:
    up.script(Fault.ERROR_EVENT)
    with pytest.raises(ServerError, match="scripted error mid-stream"):
        stream(up)


def test_missing_api_key_names_the_variable(up: OpenAIUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPSTREAM_TEST_KEY", raising=False)
    for call in (complete, stream):
        with pytest.raises(MissingCredentials) as caught:
            call(up, api_key_env="UPSTREAM_TEST_KEY")
        assert caught.value.env_var == "UPSTREAM_TEST_KEY" and "UPSTREAM_TEST_KEY" in str(caught.value)
    assert up.count == 0


def test_remote_hosts_are_refused_while_blocked() -> None:
    remote = OpenAICompatProvider("openai", ProviderSettings(type="openai"))  # https://api.openai.com/v1
    with pytest.raises(ProviderConnectionError, match="KEEL_BLOCK_REMOTE"):
        run_closing(remote, lambda p: p.complete(REQUEST, "gpt-test"))
    with pytest.raises(ProviderConnectionError, match="KEEL_BLOCK_REMOTE"):
        run_closing(remote, lambda p: collect(p.stream(REQUEST, "gpt-test")))


@pytest.mark.parametrize(("host", "local"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True), ("LOCALHOST.", True),
    ("10.0.0.1", False), ("api.openai.com", False), ("localhost.evil.com", False), ("", False)])
def test_loopback_hosts(host: str, local: bool) -> None:
    assert is_loopback(host) is local


def test_connection_refused_is_a_connection_error() -> None:
    with OpenAIUpstream() as gone:
        settings = ProviderSettings(type="openai", base_url=gone.base_url)
    with pytest.raises(ProviderConnectionError):
        run_closing(OpenAICompatProvider("gone", settings), lambda p: p.complete(REQUEST, "gpt-test"))


# -- shared machinery (keel.providers._http) -----------------------------------------------------

STREAM = (b": comment\r\n\r\nevent: message_start\r\ndata: {\"a\": 1}\r\n\r\n"
          b"data: line one\ndata: line two\n\nid: 7\nretry: 10\ndata:no-space\n\ndata: caf\xc3\xa9\n\ndata: [DONE]\n\n")
EVENTS = [SSEEvent('{"a": 1}', "message_start"), SSEEvent("line one\nline two"), SSEEvent("no-space"),
          SSEEvent("café"), SSEEvent("[DONE]")]


@pytest.mark.parametrize("split", range(len(STREAM) + 1))
def test_sse_events_survive_any_split(split: int) -> None:
    decoder = SSEDecoder()
    events = decoder.feed(STREAM[:split]) + decoder.feed(STREAM[split:]) + decoder.close()
    assert events == EVENTS


def test_sse_byte_by_byte_with_cr_line_ends() -> None:
    decoder = SSEDecoder()
    events = [e for byte in STREAM.replace(b"\r\n", b"\r") for e in decoder.feed(bytes([byte]))]
    assert events + decoder.close() == EVENTS


def test_sse_last_event_without_blank_line_is_delivered_at_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n\ndata: [DONE]") == [SSEEvent("x")]
    assert decoder.close() == [SSEEvent("[DONE]")]


def test_retry_after_forms() -> None:
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=120), usegmt=True)
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "3"}) == 1.5
    assert 100 < parse_retry_after({"retry-after": later}) <= 120
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


def test_importing_the_providers_does_not_import_aiohttp() -> None:
    code = ("import sys, keel.providers.openai_compat, keel.providers.anthropic; "
            "assert 'aiohttp' not in sys.modules, 'aiohttp imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
