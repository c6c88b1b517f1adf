"""StructuredStage with the shipped fake provider: repairs, bounded attempts, streams, the trace."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import BaseModel

from keel.errors import OutputValidationError
from keel.providers.fake import FakeProvider
from keel.settings import Settings, load_settings
from keel.store import open_store

from .conftest import ask, run_ask, structured_client

GOOD = '{"name": "pen", "qty": 2}'


class Item(BaseModel):
    name: str
    qty: int


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(env={})


def fake_of(settings: Settings, *replies: str | BaseException, max_repairs: int = 2):
    client = structured_client(settings, max_repairs=max_repairs)
    fake = client.provider("fake")
    assert isinstance(fake, FakeProvider)
    fake.queue(*replies)
    return client, fake


def test_a_wrong_shape_is_repaired_on_the_second_attempt(settings: Settings) -> None:
    client, fake = fake_of(settings, '{"name": "pen", "qty": "two"}', GOOD)
    outcome = asyncio.run(ask(client, Item, model="fake/echo"))
    assert outcome.error is None and outcome.response is not None
    assert outcome.response.parsed == Item(name="pen", qty=2)
    assert outcome.notes["path"] == "fake" and outcome.notes["schema"] == "Item"
    first, second = outcome.notes["attempts"]
    assert not first["ok"] and first["errors"] == ["qty: Input should be a valid integer, unable to parse string "
                                                   "as an integer (got 'two')"]
    assert second == {"ok": True, "errors": [], "finish_reason": "stop", "prompt_tokens": second["prompt_tokens"],
                      "completion_tokens": 4}
    assert len(fake.history) == 2
    asked, repaired = (request for _, request in fake.history)
    assert asked.json_schema == outcome.call.output.schema
    assert [m.role for m in repaired.messages] == ["user", "assistant", "user"]
    assert repaired.messages[1].content == '{"name": "pen", "qty": "two"}'
    assert "qty: Input should be a valid integer" in repaired.messages[2].text()


def test_an_answer_that_never_fits_fails_after_one_plus_max_repairs_calls(settings: Settings) -> None:
    client, fake = fake_of(settings, "not json", '{"name": 1, "qty": 2}', '{"qty": 2}')
    outcome = asyncio.run(ask(client, Item, model="fake/echo"))
    error = outcome.error
    assert isinstance(error, OutputValidationError) and outcome.response is None
    assert len(fake.history) == 3
    assert error.path == "fake" and [a["ok"] for a in error.attempts] == [False, False, False]
    text = str(error)
    assert "gave no answer matching the schema 'Item' in 3 attempts (path: fake)" in text
    assert "attempt 1: (root): Invalid JSON" in text
    assert "attempt 2: name: Input should be a valid string (got 1)" in text
    assert "attempt 3: name: Field required (got {'qty': 2})" in text
    assert [p.path for p in error.problems] == ["name"] and error.text == '{"qty": 2}'
    assert outcome.oks == [False, False, False]


def test_max_repairs_zero_makes_one_call(settings: Settings) -> None:
    client, fake = fake_of(settings, "nope", GOOD, max_repairs=0)
    outcome = asyncio.run(ask(client, Item, model="fake/echo"))
    assert isinstance(outcome.error, OutputValidationError) and len(fake.history) == 1


def test_usage_is_summed_over_the_attempts(settings: Settings) -> None:
    client, fake = fake_of(settings, "one two three", GOOD)
    outcome = asyncio.run(ask(client, Item, model="fake/echo"))
    assert outcome.response is not None
    completions = [a["completion_tokens"] for a in outcome.notes["attempts"]]
    prompts = [a["prompt_tokens"] for a in outcome.notes["attempts"]]
    assert completions == [3, 4]
    assert outcome.response.usage.completion_tokens == 7 and outcome.response.usage.prompt_tokens == sum(prompts)


def test_a_fenced_answer_is_accepted(settings: Settings) -> None:
    client, _ = fake_of(settings, f"```json\n{GOOD}\n```")
    outcome = asyncio.run(ask(client, Item, model="fake/echo"))
    assert outcome.response is not None and outcome.response.parsed == Item(name="pen", qty=2)


def test_a_provider_refusing_its_own_answer_is_a_failed_attempt(settings: Settings) -> None:
    refused = OutputValidationError("does not match", text='{"name": "pen"}', finish_reason="stop")
    client, fake = fake_of(settings, refused, GOOD)
    outcome = asyncio.run(ask(client, Item, model="fake/echo"))
    assert outcome.response is not None and outcome.response.parsed == Item(name="pen", qty=2)
    first = outcome.notes["attempts"][0]
    assert not first["ok"] and first["errors"] == ["qty: Field required (got {'name': 'pen'})"]
    assert fake.history[1][1].messages[1].content == '{"name": "pen"}'


def test_a_call_without_output_is_untouched(settings: Settings) -> None:
    client, fake = fake_of(settings)
    outcome = asyncio.run(ask(client, None, "hello", model="fake/echo"))
    assert outcome.response is not None and outcome.response.content == "Echo: hello"
    assert outcome.response.parsed is None and "structured" not in outcome.call.notes
    assert fake.history[0][1].response_format is None


def test_a_valid_stream_is_validated_at_its_end(settings: Settings) -> None:
    client, _ = fake_of(settings, GOOD)
    outcome = asyncio.run(ask(client, Item, model="fake/echo", stream=True))
    assert outcome.error is None and "".join(c.text for c in outcome.chunks) == GOOD
    assert outcome.call.notes["_parsed"] == Item(name="pen", qty=2) and outcome.oks == [True]


def test_an_invalid_stream_raises_after_its_chunks_without_repair(settings: Settings) -> None:
    client, fake = fake_of(settings, '{"name": "pen"}', GOOD)
    outcome = asyncio.run(ask(client, Item, model="fake/echo", stream=True))
    assert isinstance(outcome.error, OutputValidationError)
    assert "".join(c.text for c in outcome.chunks) == '{"name": "pen"}' and outcome.chunks[-1].finish_reason == "stop"
    assert len(fake.history) == 1 and outcome.oks == [False]
    assert "attempt 1: qty: Field required" in str(outcome.error)


def test_the_trace_records_every_attempt_and_the_repair_turns(settings: Settings) -> None:
    client = structured_client(settings, record=True)
    client.provider("fake").queue("Sure!", GOOD)
    outcome = asyncio.run(ask(client, Item, model="fake/echo", close=False))
    assert client.flush()
    asyncio.run(client.aclose())
    store = open_store(settings.effective_store_url)
    try:
        [record] = store.list_traces()
    finally:
        store.close()
    assert outcome.response is not None and record["id"] == outcome.response.trace_id
    assert [a["ok"] for a in record["notes"]["structured"]["attempts"]] == [False, True]
    assert [m["role"] for m in record["request"]["messages"]] == ["user", "assistant", "user"]
    assert record["completion_tokens"] == 1 + 4


def test_the_fakes_own_answer_fills_the_schema(settings: Settings) -> None:
    outcome = run_ask(settings, Item, model="fake/echo")
    assert outcome.response is not None and outcome.response.parsed == Item(name="", qty=0)
