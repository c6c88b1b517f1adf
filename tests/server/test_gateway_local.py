"""The official openai client against `keel serve` on the embedded local model."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jsonschema
import openai
import pytest

from keel.server.app import create_app
from keel.settings import load_settings
from keel.store import open_store

from .conftest import RunningGateway, run_gateway

pytestmark = pytest.mark.local_model

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"type": "string", "maxLength": 40},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    home = tmp_path_factory.mktemp("local-gw")
    with run_gateway(create_app(load_settings(env={}, home=home / ".keel"))) as gw:
        yield gw


def _client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, timeout=300)


def test_completion_and_stream_from_the_local_model(local_gateway: RunningGateway) -> None:
    with _client(local_gateway) as client:
        answer = client.chat.completions.create(
            model="local", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0, seed=1
        )
        chunks = list(
            client.chat.completions.create(
                model="local",
                messages=[{"role": "user", "content": "Name a color."}],
                max_tokens=16,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert answer.choices[0].message.content.strip()
    assert 0 < answer.usage.completion_tokens <= 16 and answer.usage.prompt_tokens > 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 16


def test_json_schema_request_returns_valid_json(local_gateway: RunningGateway) -> None:
    with _client(local_gateway) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="local",
            messages=[{"role": "user", "content": "Extract the person: Maria is 34 and lives in Lisbon."}],
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}},
            max_tokens=80,
            temperature=0,
        )
    answer = raw.parse()
    jsonschema.validate(json.loads(answer.choices[0].message.content), SCHEMA)
    assert local_gateway.client.flush()
    store = open_store(local_gateway.client.settings.effective_store_url)
    record = store.get_trace(raw.headers["x-keel-trace-id"])
    store.close()
    assert record["provider"] == "local" and record["cost"] == "0" and record["completion_tokens"] > 0
    assert record["fingerprint"] and len(record["fingerprint"]) >= 64
