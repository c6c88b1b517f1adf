"""The deterministic assertions: text, JSON, numbers, length, latency, cost and Python functions."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator

from ._base import Assertion, Environment, Observation, Outcome, expected, verdict
from .jsonpath import parse_path, read_path


def _fold(text: str, case_sensitive: bool) -> str:
    return text if case_sensitive else text.casefold()


class _TextCheck(Assertion):
    value: Any = None
    case_sensitive: bool = True

    def _values(self, observation: Observation) -> list[str]:
        found = expected(self.value, observation)
        items = found if isinstance(found, list) else [found]
        return [_fold(str(item), self.case_sensitive) for item in items]


class Equals(_TextCheck):
    """The answer (trimmed) equals the value; a non-text value is compared with the answer as JSON."""

    type: Literal["equals"]

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        want = expected(self.value, observation)
        if not isinstance(want, str):
            try:
                return verdict(observation.json() == want, f"JSON answer is not {want!r}")
            except ValueError:
                return verdict(False, f"expected {want!r}; the answer is not JSON")
        got = _fold(observation.text.strip(), self.case_sensitive)
        return verdict(got == _fold(want.strip(), self.case_sensitive), f"expected {want!r}, got {observation.text.strip()[:80]!r}")


class Contains(_TextCheck):
    """The answer contains the value (every value, when a list)."""

    type: Literal["contains"]

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        text = _fold(observation.text, self.case_sensitive)
        missing = [v for v in self._values(observation) if v not in text]
        return verdict(not missing, f"does not contain {', '.join(repr(m) for m in missing)}")


class NotContains(_TextCheck):
    """The answer contains none of the values."""

    type: Literal["not-contains"]

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        text = _fold(observation.text, self.case_sensitive)
        present = [v for v in self._values(observation) if v in text]
        return verdict(not present, f"contains {', '.join(repr(p) for p in present)}")


class StartsWith(_TextCheck):
    """The answer (leading whitespace ignored) starts with the value (one of them, when a list)."""

    type: Literal["starts-with"]

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        text = _fold(observation.text.lstrip(), self.case_sensitive)
        values = self._values(observation)
        return verdict(any(text.startswith(v) for v in values), f"does not start with {' or '.join(repr(v) for v in values)}")


class Regex(Assertion):
    """The pattern matches somewhere in the answer (`re.search`)."""

    type: Literal["regex"]
    pattern: str
    case_sensitive: bool = True

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        flags = 0 if self.case_sensitive else re.IGNORECASE
        return verdict(re.search(self.pattern, observation.text, flags) is not None, f"no match for /{self.pattern}/")


class JsonValid(Assertion):
    """The answer is JSON."""

    type: Literal["json-valid"]

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        try:
            observation.json()
        except ValueError as exc:
            return verdict(False, f"not JSON: {exc}")
        return verdict(True, "")


class JsonSchema(Assertion):
    """The answer is JSON that matches the schema."""

    type: Literal["json-schema"]
    schema_: dict[str, Any] = Field(alias="schema")

    @field_validator("schema_")
    @classmethod
    def _valid(cls, schema: dict[str, Any]) -> dict[str, Any]:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return schema

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import best_match

        try:
            document = observation.json()
        except ValueError as exc:
            return verdict(False, f"not JSON: {exc}")
        error = best_match(Draft202012Validator(self.schema_).iter_errors(document))
        if error is None:
            return verdict(True, "")
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return verdict(False, f"schema: {where}: {error.message}")


class JsonPath(Assertion):
    """The value at `path` (e.g. `$.items[0].name`) in the JSON answer equals the value."""

    type: Literal["json-path"]
    path: str
    value: Any = None

    @field_validator("path")
    @classmethod
    def _parses(cls, path: str) -> str:
        parse_path(path)
        return path

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        want = expected(self.value, observation)
        try:
            found, got = read_path(observation.json(), self.path)
        except ValueError as exc:
            return verdict(False, f"not JSON: {exc}")
        if not found:
            return verdict(False, f"{self.path} is not in the answer")
        return verdict(got == want, f"{self.path} is {got!r}, expected {want!r}")


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


class Numeric(Assertion):
    """The number in the answer (or at `path` in its JSON) is within `tolerance` of the value."""

    type: Literal["numeric"]
    value: Any = None
    tolerance: float = Field(default=0.0, ge=0)
    path: str | None = None

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        want = float(expected(self.value, observation))
        got = self._number(observation)
        if got is None:
            return verdict(False, "no number in the answer" + (f" at {self.path}" if self.path else ""))
        return verdict(abs(got - want) <= self.tolerance, f"{got:g} is not within {self.tolerance:g} of {want:g}", got=got)

    def _number(self, observation: Observation) -> float | None:
        if self.path is not None:
            try:
                found, value = read_path(observation.json(), self.path)
            except ValueError:
                return None
            return float(value) if found and isinstance(value, int | float) and not isinstance(value, bool) else None
        match = _NUMBER.search(observation.text)
        return float(match.group()) if match else None


class Length(Assertion):
    """The answer's length, in characters or words, is within [min, max]."""

    type: Literal["length"]
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)
    unit: Literal["chars", "words"] = "chars"

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        size = len(observation.text) if self.unit == "chars" else len(observation.text.split())
        low_ok = self.min is None or size >= self.min
        high_ok = self.max is None or size <= self.max
        return verdict(low_ok and high_ok, f"{size} {self.unit}, outside [{self.min}, {self.max}]")


class Latency(Assertion):
    """The call took at most `max_ms` milliseconds."""

    type: Literal["latency"]
    max_ms: float = Field(gt=0)

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        if observation.latency_ms is None:
            return verdict(False, "latency unknown")
        return verdict(observation.latency_ms <= self.max_ms, f"took {observation.latency_ms:.0f} ms > {self.max_ms:g} ms")


class CostCheck(Assertion):
    """The call cost at most `max` (USD). An unknown cost fails: it is never taken as 0."""

    type: Literal["cost"]
    max: Decimal = Field(ge=0)

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        if observation.cost is None:
            return verdict(False, "cost unknown (no price for this model; set [models.<alias>.price] in keel.toml)")
        return verdict(observation.cost <= self.max, f"cost {observation.cost} > {self.max}")
