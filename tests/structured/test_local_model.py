"""StructuredStage with the real local model: grammar-constrained decoding, then validation."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from keel.errors import OutputValidationError

from .conftest import local_settings, run_ask

pytestmark = [pytest.mark.local_model, pytest.mark.usefixtures("local_engine")]

TEXT = "Ada Lovelace ordered two red pens and one blue notebook. Ship to London."
OPTIONS = {"model": "local/default", "temperature": 0, "seed": 1, "max_tokens": 300}


class Color(str, Enum):
    red = "red"
    blue = "blue"
    green = "green"


class Line(BaseModel):
    item: str = Field(max_length=24)
    color: Color
    quantity: int = Field(ge=1, le=9)


class Address(BaseModel):
    city: str = Field(max_length=24)


class Order(BaseModel):
    customer: str = Field(max_length=32)
    ship_to: Address
    lines: list[Line] = Field(min_length=1, max_length=3)


def test_a_nested_model_comes_back_as_a_valid_instance(project: Path) -> None:
    outcome = run_ask(local_settings(project), Order, TEXT, **OPTIONS)
    assert outcome.error is None and outcome.response is not None
    order = outcome.response.parsed
    assert isinstance(order, Order) and isinstance(order.ship_to, Address)
    assert 1 <= len(order.lines) <= 3 and all(isinstance(line.color, Color) for line in order.lines)
    assert outcome.notes["path"] == "grammar" and outcome.oks == [True]
    assert outcome.call.request.json_schema == outcome.call.output.schema


def test_a_streamed_nested_model_is_validated_at_the_end(project: Path) -> None:
    outcome = run_ask(local_settings(project), Order, TEXT, stream=True, **OPTIONS)
    assert outcome.error is None and isinstance(outcome.call.notes["_parsed"], Order)


IMPOSSIBLE = {
    "title": "Code",
    "type": "object",
    "properties": {"code": {"type": "string", "pattern": "^$", "minLength": 1}},
    "required": ["code"],
}


def test_an_unsatisfiable_schema_fails_after_the_bounded_attempts(project: Path) -> None:
    outcome = run_ask(local_settings(project), IMPOSSIBLE, "Give me a code.", **OPTIONS)
    error = outcome.error
    assert isinstance(error, OutputValidationError) and error.path == "grammar"
    assert len(error.attempts) == 3 and outcome.oks == [False, False, False]
    for n in (1, 2, 3):
        assert f"attempt {n}: code: " in str(error)
    assert all(attempt["errors"] for attempt in error.attempts)
    assert [m.role for m in outcome.call.request.messages] == ["user", "assistant", "user", "assistant", "user"]
