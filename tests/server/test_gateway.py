"""The gateway through the official openai client, on the fake provider."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest

from keel.errors import ProviderTimeout, RateLimited, ServerError
from keel.server.app import create_app
from keel.settings import load_settings
from keel.store import open_store

from .conftest import RunningGateway, run_gateway, write_config


def _client(gw: RunningGateway, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def _post(gw: RunningGateway, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(gw.base_url + "/chat/completions", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read()), dict(exc.headers)


def test_completion_through_openai_client_carries_trace_id(gateway: RunningGateway) -> None:
    with _client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="fake/echo", messages=[{"role": "user", "content": "hello gateway"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "Echo: hello gateway"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    trace_id = raw.headers["x-keel-trace-id"]
    assert len(trace_id) == 32
    gateway.client.flush()
    record = open_store(gateway.client.settings.effective_store_url).get_trace(trace_id)
    assert record is not None
    assert record["source"] == "gateway" and record["status"] == "ok"
    assert record["prompt_tokens"] == 2 and record["completion_tokens"] == 3
    assert record["request"]["messages"][0]["content"] == "hello gateway"


def test_stream_honours_include_usage(gateway: RunningGateway) -> None:
    with _client(gateway) as client:
        with_usage = list(
            client.chat.completions.create(
                model="fake/echo", messages=[{"role": "user", "content": "one two three"}], stream=True, stream_options={"include_usage": True}
            )
        )
        without = list(client.chat.completions.create(model="fake/echo", messages=[{"role": "user", "content": "one two three"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in with_usage if c.choices)
    assert text == "Echo: one two three"
    assert with_usage[-1].usage is not None and with_usage[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in without)
    assert "".join(c.choices[0].delta.content or "" for c in without if c.choices) == text


def test_unknown_model_is_404_listing_known_models(gateway: RunningGateway) -> None:
    with _client(gateway) as client, pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert "gpt-9" in str(caught.value) and "local" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"model": "fake/x"}', 400, "messages"),
        (b'{"model": "fake/x", "messages": [{"role": "wizard", "content": "x"}]}', 400, "role"),
        (b'{"model": "fake/x", "messages": [], "temperature": 7}', 400, "temperature"),
    ],
)
def test_malformed_requests_get_clear_400s(gateway: RunningGateway, body: bytes, status: int, fragment: str) -> None:
    code, payload, _ = _post(gateway, body)
    assert code == status
    assert fragment in payload["error"]["message"]
    assert payload["error"]["type"] == "invalid_request_error"


def test_oversized_request_is_413(project: Path) -> None:
    write_config(project, "[gateway]\nmax_request_bytes = 2048\n")
    with run_gateway(create_app(load_settings())) as gw:
        big = json.dumps({"model": "fake/x", "messages": [{"role": "user", "content": "x" * 5000}]}).encode()
        code, payload, _ = _post(gw, big)
    assert code == 413
    assert "2048 bytes" in payload["error"]["message"]


def test_gateway_keys_are_enforced(project: Path) -> None:
    write_config(project, '[gateway]\nkeys = ["sekrit"]\n')
    with run_gateway(create_app(load_settings())) as gw:
        with _client(gw, "wrong") as client, pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="fake/x", messages=[{"role": "user", "content": "x"}])
        with _client(gw, "sekrit") as client:
            answer = client.chat.completions.create(model="fake/x", messages=[{"role": "user", "content": "x"}])
    assert answer.choices[0].message.content == "Echo: x"


@pytest.mark.parametrize(
    ("error", "status", "exc_type"),
    [
        (RateLimited("slow down", provider="fake", status=429, retry_after=3.0), 429, openai.RateLimitError),
        (ServerError("upstream broke", provider="fake", status=500), 502, openai.InternalServerError),
        (ProviderTimeout("no answer", provider="fake"), 504, openai.InternalServerError),
    ],
)
def test_upstream_failures_become_openai_errors(gateway: RunningGateway, error: Exception, status: int, exc_type: type) -> None:
    gateway.client.provider("fake").queue(error)
    with _client(gateway) as client, pytest.raises(exc_type) as caught:
        client.chat.completions.create(model="fake/x", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == status
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "3"
    gateway.client.flush()
    trace_id = caught.value.response.headers["x-keel-trace-id"]
    record = open_store(gateway.client.settings.effective_store_url).get_trace(trace_id)
    assert record["status"] == "error" and record["error_class"] == type(error).__name__


def test_models_and_health(project: Path) -> None:
    write_config(project, '[models.fast]\nprovider = "fake"\nmodel = "quick"\n')
    with run_gateway(create_app(load_settings())) as gw:
        with _client(gw) as client:
            ids = [m.id for m in client.models.list()]
            answer = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "via alias"}])
        with urllib.request.urlopen(f"http://127.0.0.1:{gw.port}/healthz", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "ok"}
    assert ids == ["fast", "local"]
    assert answer.model == "quick"


def test_unknown_route_is_a_json_404(gateway: RunningGateway) -> None:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/v1/embeddingz", timeout=10)
    except urllib.error.HTTPError as exc:
        with exc:
            assert exc.code == 404
            assert "/v1/chat/completions" in json.loads(exc.read())["error"]["message"]
