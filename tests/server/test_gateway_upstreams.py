"""The gateway in front of real OpenAI-compatible and Anthropic servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from upstreams import AnthropicUpstream, Fault, OpenAIUpstream

from keel.server.app import create_app
from keel.settings import load_settings
from keel.store import open_store

from .conftest import RunningGateway, run_gateway, write_config

CONFIG = """
[routing]
retries = 0

[providers.up]
type = "openai"
base_url = "{openai}"
api_key_env = "KEEL_TEST_UP_KEY"
pricing_id = "openai"
timeout = 2

[providers.claude]
type = "anthropic"
base_url = "{anthropic}"
api_key_env = "KEEL_TEST_UP_KEY"

[models.mini]
provider = "up"
model = "gpt-4o-mini"

[models.sonnet]
provider = "claude"
model = "claude-sonnet-4-5"
"""


@pytest.fixture
def setup(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningGateway, OpenAIUpstream, AnthropicUpstream]]:
    monkeypatch.setenv("KEEL_TEST_UP_KEY", "upstream-secret")
    with OpenAIUpstream() as up, AnthropicUpstream() as claude:
        write_config(project, CONFIG.format(openai=up.base_url, anthropic=claude.base_url))
        with run_gateway(create_app(load_settings())) as gw:
            yield gw, up, claude


def _client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, timeout=30)


def _record(gw: RunningGateway, trace_id: str) -> dict:
    assert gw.client.flush()
    record = open_store(gw.client.settings.effective_store_url).get_trace(trace_id)
    assert record is not None
    return record


def test_completion_passthrough_and_cost(setup: tuple[RunningGateway, OpenAIUpstream, AnthropicUpstream]) -> None:
    gw, up, _ = setup
    up.cached_tokens = 1
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    with _client(gw) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="mini",
            messages=[{"role": "user", "content": "find cats"}],
            tools=tools,
            tool_choice="auto",
            user="u-1",
            extra_body={"vendor_knob": {"deep": [1, 2]}},
        )
    completion = raw.parse()
    sent = up.requests[-1]
    assert sent.headers["authorization"] == "Bearer upstream-secret"
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["tools"] == tools and sent.body["tool_choice"] == "auto" and sent.body["user"] == "u-1"
    assert sent.body["vendor_knob"] == {"deep": [1, 2]}
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup"
    record = _record(gw, raw.headers["x-keel-trace-id"])
    assert record["cached_tokens"] == 1 and record["prompt_tokens"] == 2
    assert record["cost"] is not None and record["cost_source"].startswith("genai-prices")


def test_streams_from_both_wire_formats(setup: tuple[RunningGateway, OpenAIUpstream, AnthropicUpstream]) -> None:
    gw, up, claude = setup
    with _client(gw) as client:
        for model in ("mini", "sonnet"):
            chunks = list(
                client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "stream me please"}], stream=True, stream_options={"include_usage": True}
                )
            )
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: stream me please"
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert up.requests[-1].body["stream_options"] == {"include_usage": True}
    assert claude.requests[-1].headers["x-api-key"] == "upstream-secret"


def test_anthropic_completion_through_gateway(setup: tuple[RunningGateway, OpenAIUpstream, AnthropicUpstream]) -> None:
    gw, _, claude = setup
    with _client(gw) as client:
        answer = client.chat.completions.create(
            model="sonnet", messages=[{"role": "system", "content": "be terse"}, {"role": "user", "content": "hello"}], max_tokens=50
        )
    assert answer.choices[0].message.content == "Echo: hello"
    assert claude.requests[-1].body["system"] == "be terse"


@pytest.mark.parametrize(
    ("fault", "params", "status", "error_class"),
    [
        (Fault.RATE_LIMIT, {"retry_after": 7}, 429, "RateLimited"),
        (Fault.ERROR, {"status": 500}, 502, "ServerError"),
        (Fault.HANG, {}, 504, "ProviderTimeout"),
        (Fault.MALFORMED_JSON, {}, 502, "UnexpectedResponse"),
    ],
)
def test_upstream_failures_map_to_openai_errors(
    setup: tuple[RunningGateway, OpenAIUpstream, AnthropicUpstream], fault: Fault, params: dict, status: int, error_class: str
) -> None:
    gw, up, _ = setup
    up.script(fault, times=1, **params)
    with _client(gw) as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="mini", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == status
    assert caught.value.body["code"] == error_class
    if fault is Fault.RATE_LIMIT:
        assert caught.value.response.headers["retry-after"] == "7"
    record = _record(gw, caught.value.response.headers["x-keel-trace-id"])
    assert record["status"] == "error" and record["error_class"] == error_class


def test_stream_cut_midway_ends_with_an_error_event(setup: tuple[RunningGateway, OpenAIUpstream, AnthropicUpstream]) -> None:
    gw, up, _ = setup
    up.script(Fault.STREAM_CUT, times=1)
    with _client(gw) as client, pytest.raises(openai.APIError) as caught:
        list(client.chat.completions.create(model="mini", messages=[{"role": "user", "content": "a long answer here"}], stream=True))
    assert "UnexpectedResponse" in str(caught.value.body) or "stream" in str(caught.value).lower()
    assert gw.client.flush()
    [record] = open_store(gw.client.settings.effective_store_url).list_traces(status="error")
    assert record["error_class"] == "UnexpectedResponse" and record["stream"] is True
