"""OutputSpec: schemas from models, types and dicts; validation problems named by path and value."""

from __future__ import annotations

from enum import Enum

import pytest
from pydantic import BaseModel, ConfigDict, Field

from keel.errors import OutputValidationError, RequestError
from keel.structured import OutputSpec, strip_fences


class Status(str, Enum):
    paid = "paid"
    open = "open"


class Line(BaseModel):
    item: str
    qty: int = Field(ge=1)


class Invoice(BaseModel):
    number: str
    status: Status
    lines: list[Line] = Field(max_length=3)


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    labels: dict[str, int] = {}


def test_a_model_gives_a_closed_schema_and_validates_to_an_instance() -> None:
    spec = OutputSpec.of(Invoice)
    assert spec.name == "Invoice" and spec.type is Invoice
    assert spec.schema["additionalProperties"] is False
    assert spec.schema["$defs"]["Line"]["additionalProperties"] is False
    invoice = spec.validate('{"number": "A-1", "status": "paid", "lines": [{"item": "pen", "qty": 2}]}')
    assert invoice == Invoice(number="A-1", status=Status.paid, lines=[Line(item="pen", qty=2)])


def test_closing_keeps_what_a_schema_says_about_other_properties() -> None:
    schema = OutputSpec.of(Loose).schema
    assert schema["additionalProperties"] is True
    assert schema["properties"]["labels"]["additionalProperties"] == {"type": "integer"}


def test_every_problem_is_listed_with_its_path_and_value() -> None:
    spec = OutputSpec.of(Invoice)
    answer = '{"number": "A-1", "status": "late", "lines": [{"item": "pen", "qty": 0}, {"qty": "two"}]}'
    with pytest.raises(OutputValidationError) as caught:
        spec.validate(answer)
    found = [(p.path, p.value) for p in caught.value.problems]
    assert found == [("status", "late"), ("lines[0].qty", 0), ("lines[1].item", {"qty": "two"}),
                     ("lines[1].qty", "two")]
    text = str(caught.value)
    assert "lines[0].qty: Input should be greater than or equal to 1 (got 0)" in text
    assert "status: Input should be 'paid' or 'open' (got 'late')" in text


def test_prose_is_not_json() -> None:
    with pytest.raises(OutputValidationError, match=r"\(root\): Invalid JSON.*got 'Sure! Here is"):
        OutputSpec.of(Invoice).validate("Sure! Here is your invoice.")


def test_a_list_type_validates_to_a_list_and_is_wrapped_for_an_object_root() -> None:
    spec = OutputSpec.of(list[Line])
    assert spec.name == "list_Line" and not spec.object_root
    fmt = spec.response_format(wrap=True).json_schema
    assert fmt is not None and fmt.schema_["required"] == ["value"] and "$defs" in fmt.schema_
    assert spec.validate('{"value": [{"item": "a", "qty": 1}]}', wrapped=True) == [Line(item="a", qty=1)]
    assert spec.validate('[{"item": "a", "qty": 1}]') == [Line(item="a", qty=1)]


def test_a_dict_schema_is_used_as_given_and_validates_to_json() -> None:
    schema = {"title": "Point", "type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
    spec = OutputSpec.of(schema)
    assert spec.schema is schema and spec.name == "Point" and spec.type is None
    assert spec.validate('{"x": 1.5, "extra": true}') == {"x": 1.5, "extra": True}
    with pytest.raises(OutputValidationError, match=r"x: 'one' is not of type 'number' \(got 'one'\)"):
        spec.validate('{"x": "one"}')


def test_strict_is_asked_only_of_schemas_strict_mode_takes() -> None:
    strict = OutputSpec.of(Invoice).response_format().json_schema
    loose = OutputSpec.of(Loose).response_format().json_schema
    assert strict is not None and strict.strict is True
    assert loose is not None and loose.strict is None


def test_an_invalid_schema_or_type_is_a_request_error() -> None:
    with pytest.raises(RequestError, match="Invalid JSON schema at properties/a/type"):
        OutputSpec.of({"properties": {"a": {"type": "nonsense"}}})
    with pytest.raises(RequestError, match="Cannot use"):
        OutputSpec.of(object())


def test_of_accepts_a_spec() -> None:
    spec = OutputSpec.of(Line)
    assert OutputSpec.of(spec) is spec


@pytest.mark.parametrize("text", ['```json\n{"a": 1}\n```', '```\n{"a": 1}```', '  {"a": 1}\n'])
def test_code_fences_are_stripped(text: str) -> None:
    assert strip_fences(text) == '{"a": 1}'


class Odd(BaseModel):
    properties: dict[str, str]
    default: str = "x"


def test_closing_touches_schemas_only_not_fields_named_like_keywords() -> None:
    schema = OutputSpec.of(Odd).schema
    assert set(schema["properties"]) == {"properties", "default"}
    assert schema["additionalProperties"] is False
