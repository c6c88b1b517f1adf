"""`OutputSpec`: the shape an answer must have, as a JSON schema and a validator.

    OutputSpec.of(Invoice)             a Pydantic model: validates to an Invoice
    OutputSpec.of(list[Invoice])       any type a pydantic TypeAdapter accepts
    OutputSpec.of({"type": "object", …})   a JSON Schema: validates to the parsed JSON

Schemas generated from Python types are closed (`additionalProperties: false` on every object
that lists its properties and says nothing about others), which OpenAI's strict mode requires.
A schema given as a dict is used as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

import orjson
from pydantic import PydanticUserError, TypeAdapter, ValidationError

from ..errors import OutputValidationError, RequestError
from ..types import ResponseFormat

#: Keywords OpenAI's strict mode accepts; a schema using others is sent without `strict`.
STRICT_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "$ref",
    "$defs", "title", "description", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
})
_SHOWN_CHARS = 80
#: Where a JSON Schema nests schemas: maps of them, single ones, lists of them.
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "contains", "if", "then", "else")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")


@dataclass(frozen=True)
class Problem:
    """One way an answer misses the schema: where (a path like `items[0].qty`), what, and the value found."""

    path: str
    message: str
    value: Any

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (got {shown(self.value)})"


@dataclass(frozen=True)
class OutputSpec:
    """A schema to send and the validator its answers must pass (build with `of`)."""

    schema: dict[str, Any]
    name: str = "output"
    #: The Python type answers validate to; None for a schema given as a dict (answers stay JSON).
    type: Any = None
    adapter: TypeAdapter[Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, output: Any) -> OutputSpec:
        """An OutputSpec from a spec, a JSON Schema dict, or a type (Pydantic model, list[Model], …)."""
        if isinstance(output, OutputSpec):
            return output
        if isinstance(output, dict):
            return cls.from_schema(output)
        return cls.from_type(output)

    @classmethod
    def from_schema(cls, schema: dict[str, Any], name: str | None = None) -> OutputSpec:
        try:
            _validator().check_schema(schema)
        except _schema_error() as exc:
            where = "/".join(str(p) for p in exc.path) or "(root)"
            raise RequestError(f"Invalid JSON schema at {where}: {exc.message}", schema_error=exc.message) from None
        return cls(schema, safe_name(name or str(schema.get("title") or "output")))

    @classmethod
    def from_type(cls, kind: Any, name: str | None = None) -> OutputSpec:
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(kind)
            schema = adapter.json_schema()
        except PydanticUserError as exc:
            raise RequestError(f"Cannot use {kind!r} as an output type: {exc}") from None
        return cls(closed(schema), safe_name(name or type_name(kind)), kind, adapter)

    @property
    def object_root(self) -> bool:
        return self.schema.get("type") == "object"

    def response_format(self, *, wrap: bool = False) -> ResponseFormat:
        """The json_schema response format; `wrap` puts a non-object schema under {"value": …}."""
        schema = wrap_in_object(self.schema) if wrap and not self.object_root else self.schema
        fmt = ResponseFormat.from_schema(schema, name=self.name)
        if strict_compatible(schema) and fmt.json_schema is not None:
            fmt.json_schema.strict = True
        return fmt

    def validate(self, text: str, *, wrapped: bool = False) -> Any:
        """The answer `text` as the declared type (or JSON); OutputValidationError listing every problem."""
        value, problems = self.check(text, wrapped=wrapped)
        if problems:
            listing = "; ".join(str(p) for p in problems)
            raise OutputValidationError(f"The answer does not match the schema {self.name!r}: {listing}",
                                        problems=problems, text=text)
        return value

    def check(self, text: str, *, wrapped: bool = False) -> tuple[Any, list[Problem]]:
        """(the validated value, []) or (None, every problem found)."""
        if wrapped and not self.object_root:
            text = _unwrapped(text)
        if self.adapter is not None:
            try:
                return self.adapter.validate_json(text), []
            except ValidationError as exc:
                return None, problems_of(exc)
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return None, [Problem("(root)", f"Invalid JSON: {exc}", text)]
        errors = _validator()(self.schema).iter_errors(value)
        problems = [Problem(path_of(e.absolute_path), e.message, e.instance) for e in errors]
        return (None, problems) if problems else (value, [])


def strip_fences(text: str) -> str:
    """The JSON inside a Markdown code fence (```json … ```), else `text` stripped."""
    match = re.fullmatch(r"\s*```[\w-]*[ \t]*\n?(.*?)\n?```\s*", text, flags=re.DOTALL)
    return (match.group(1) if match else text).strip()


def closed(schema: Any) -> Any:
    """`schema` with `additionalProperties: false` on each object that lists properties and is silent on others."""
    if not isinstance(schema, dict):
        return schema
    result = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(result.get(key), dict):
            result[key] = {name: closed(sub) for name, sub in result[key].items()}
    for key in _SCHEMA_VALUES:
        if key in result:
            result[key] = closed(result[key])
    for key in _SCHEMA_LISTS:
        if isinstance(result.get(key), list):
            result[key] = [closed(sub) for sub in result[key]]
    if "properties" in result and "additionalProperties" not in result and result.get("type", "object") == "object":
        result["additionalProperties"] = False
    return result


def strict_compatible(schema: dict[str, Any]) -> bool:
    """Whether OpenAI's strict mode takes `schema`: closed objects, every property required, known keywords."""
    for sub in subschemas(schema):
        if not STRICT_KEYWORDS.issuperset(sub):
            return False
        if sub.get("type") == "object" or "properties" in sub:
            if sub.get("additionalProperties") is not False:
                return False
            if set(sub.get("required", ())) != set(sub.get("properties", {})):
                return False
    return True


def subschemas(schema: Any) -> Iterator[dict[str, Any]]:
    """`schema` and every schema nested in it (properties, items, $defs, anyOf, …)."""
    if not isinstance(schema, dict):
        return
    yield schema
    for key in _SCHEMA_MAPS:
        for sub in (schema.get(key) or {}).values():
            yield from subschemas(sub)
    for key in _SCHEMA_VALUES:
        yield from subschemas(schema.get(key))
    for key in _SCHEMA_LISTS:
        for sub in schema.get(key) or ():
            yield from subschemas(sub)


def wrap_in_object(schema: dict[str, Any]) -> dict[str, Any]:
    """A non-object schema as {"value": schema} (OpenAI wants an object at the root); $defs stay at the root."""
    inner = {k: v for k, v in schema.items() if k != "$defs"}
    result: dict[str, Any] = {"type": "object", "properties": {"value": inner}, "required": ["value"],
                              "additionalProperties": False}
    if "$defs" in schema:
        result["$defs"] = schema["$defs"]
    return result


def _unwrapped(text: str) -> str:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if isinstance(value, dict) and set(value) == {"value"}:
        return orjson.dumps(value["value"]).decode()
    return text


def problems_of(error: ValidationError) -> list[Problem]:
    """A pydantic ValidationError as Problems."""
    return [Problem(path_of(e["loc"]), e["msg"], e.get("input")) for e in error.errors(include_url=False)]


def path_of(location: Any) -> str:
    """A validation location as `items[0].qty` ("(root)" when empty)."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(root)"


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def type_name(kind: Any) -> str:
    origin = get_origin(kind)
    if origin is None:
        return str(getattr(kind, "__name__", "output"))
    return "_".join([type_name(origin), *(type_name(arg) for arg in get_args(kind))])


def safe_name(name: str) -> str:
    """A schema name OpenAI accepts: ^[a-zA-Z0-9_-]{1,64}$."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64] or "output"


def _validator() -> Any:
    """jsonschema is imported on first use: `import keel` stays light."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator


def _schema_error() -> type[Exception]:
    from jsonschema import SchemaError

    return SchemaError
