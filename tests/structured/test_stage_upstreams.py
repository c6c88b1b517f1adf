"""StructuredStage against real OpenAI and Anthropic wire-format servers on 127.0.0.1."""

from __future__ import annotations

import json

from pydantic import BaseModel

from keel.errors import OutputValidationError

from .conftest import Upstreams, body_of, run_ask

PROSE = "Sure! Here is the item you asked for: a pen, two of them."


class Item(BaseModel):
    name: str
    qty: int


def test_openai_gets_the_schema_as_a_strict_response_format(ups: Upstreams) -> None:
    ups.up.reply = '{"name": "pen", "qty": 2}'
    outcome = run_ask(ups.settings, Item, model="gpt")
    assert outcome.response is not None and outcome.response.parsed == Item(name="pen", qty=2)
    fmt = body_of(ups.up)["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Item"
    assert fmt["json_schema"]["strict"] is True and fmt["json_schema"]["schema"]["additionalProperties"] is False
    assert outcome.notes["path"] == "native"


def test_an_upstream_ignoring_the_response_format_fails_clearly(ups: Upstreams) -> None:
    ups.up.reply = PROSE
    outcome = run_ask(ups.settings, Item, model="gpt")
    error = outcome.error
    assert isinstance(error, OutputValidationError) and ups.up.count == 3
    assert "gpt (up/gpt-4o-mini) gave no answer matching the schema 'Item' in 3 attempts (path: native)" in str(error)
    for n in (1, 2, 3):
        assert f"attempt {n}: (root): Invalid JSON" in str(error)
    assert all("response_format" in request.body for request in ups.up.requests)
    last = body_of(ups.up)["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert last[1]["content"] == PROSE and "Invalid JSON" in last[2]["content"]


def test_prose_then_json_is_repaired_with_the_errors_as_feedback(ups: Upstreams) -> None:
    ups.up.replies = [PROSE, '{"name": "pen", "qty": 2}']
    outcome = run_ask(ups.settings, Item, model="gpt")
    assert outcome.response is not None and outcome.response.parsed == Item(name="pen", qty=2)
    assert outcome.oks == [False, True] and ups.up.count == 2
    feedback = body_of(ups.up)["messages"][-1]
    assert feedback["role"] == "user" and "does not match the required JSON schema" in feedback["content"]
    assert "- (root): Invalid JSON: expected value at line 1 column 1 (got 'Sure! Here is" in feedback["content"]


def test_a_prompt_only_model_gets_an_instruction_and_no_response_format(ups: Upstreams) -> None:
    ups.up.reply = '```json\n{"name": "pen", "qty": 2}\n```'
    outcome = run_ask(ups.settings, Item, "A pen, two.", model="plain", system="You extract items.")
    assert outcome.response is not None and outcome.response.parsed == Item(name="pen", qty=2)
    body = body_of(ups.up)
    assert "response_format" not in body
    system, user = body["messages"]
    assert system["role"] == "system" and system["content"].startswith("You extract items.\n\n")
    assert "Answer with one JSON value" in system["content"]
    assert json.dumps(outcome.call.output.schema, separators=(",", ":")) in system["content"]
    assert user == {"role": "user", "content": "A pen, two."}
    assert outcome.notes["path"] == "prompt"


def test_a_prompt_only_model_without_a_system_message_gets_one(ups: Upstreams) -> None:
    ups.up.reply = '{"name": "pen", "qty": 2}'
    run_ask(ups.settings, Item, "A pen, two.", model="plain")
    roles = [m["role"] for m in body_of(ups.up)["messages"]]
    assert roles == ["system", "user"]


def test_a_list_travels_wrapped_in_an_object_to_openai(ups: Upstreams) -> None:
    ups.up.reply = '{"value": [{"name": "pen", "qty": 2}]}'
    outcome = run_ask(ups.settings, list[Item], model="gpt")
    assert outcome.response is not None and outcome.response.parsed == [Item(name="pen", qty=2)]
    schema = body_of(ups.up)["response_format"]["json_schema"]["schema"]
    assert schema["type"] == "object" and schema["properties"]["value"]["type"] == "array"


def test_anthropic_answers_through_a_forced_tool(ups: Upstreams) -> None:
    ups.claude.tool_input = {"name": "pen", "qty": 2}
    outcome = run_ask(ups.settings, Item, model="claude")
    assert outcome.response is not None and outcome.response.parsed == Item(name="pen", qty=2)
    body = ups.claude.requests[-1].body
    assert body["tool_choice"] == {"type": "tool", "name": "Item"}
    assert body["tools"][0]["input_schema"]["properties"]["qty"]["type"] == "integer"
    assert outcome.notes["path"] == "tool"


def test_anthropic_tool_stream_is_validated(ups: Upstreams) -> None:
    ups.claude.tool_input = {"name": "pen", "qty": 2}
    outcome = run_ask(ups.settings, Item, model="claude", stream=True)
    assert outcome.error is None and outcome.call.notes["_parsed"] == Item(name="pen", qty=2)


def test_a_streamed_prose_answer_raises_after_the_stream(ups: Upstreams) -> None:
    ups.up.reply = PROSE
    outcome = run_ask(ups.settings, Item, model="gpt", stream=True)
    assert isinstance(outcome.error, OutputValidationError) and ups.up.count == 1
    assert "".join(chunk.text for chunk in outcome.chunks) == PROSE
