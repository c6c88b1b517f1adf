"""What every assertion shares: the answer it looks at, the outcome it gives, its parameters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .dataset import Case


@dataclass
class Observation:
    """One answer to check: its text, what it cost and took, and the case it answers."""

    text: str
    case: Case
    model: str
    prompt: str
    latency_ms: float | None = None
    cost: Decimal | None = None

    def json(self) -> Any:
        """The answer parsed as JSON; ValueError when it is not JSON."""
        return json.loads(self.text)


@dataclass
class Outcome:
    passed: bool
    message: str = ""
    #: A graded score in 0..1 (1 or 0 for yes/no assertions).
    score: float | None = None
    #: What a judge said, which PII was found, …
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def credit(self) -> float:
        """What this outcome adds to the case score: full when it passed, else its partial score."""
        if self.passed:
            return 1.0
        return max(0.0, min(1.0, self.score or 0.0))


class Environment:
    """What assertions may use beyond the answer: the client (judges) and run tags."""

    def __init__(self, client: Any = None, judge_model: str | None = None, tags: dict[str, Any] | None = None) -> None:
        self.client, self.judge_model, self.tags = client, judge_model, tags or {}


class Assertion(BaseModel):
    """Base of every assertion type: `type`, `weight`, and `evaluate()`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    weight: float = Field(default=1.0, gt=0)

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        raise NotImplementedError

    def check_ready(self) -> None:
        """Raise ConfigError before any call when this assertion cannot run here (missing extra)."""

    def describe(self) -> str:
        """How reports name this assertion: `contains(value='Echo:')`."""
        return self.display_name

    @cached_property  # the assertion is frozen, and is described once per answer scored
    def display_name(self) -> str:
        params = self.model_dump(mode="json", by_alias=True, exclude={"type", "weight"}, exclude_defaults=True)
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{self.type}({shown[:80]})" if shown else self.type


def expected(value: Any, observation: Observation) -> Any:
    """An assertion's `value`: given literally, `{expected: KEY}` (a field of the case's
    `expected`), or absent (None): the case's whole `expected`."""
    if value is None:
        return observation.case.expected
    if isinstance(value, dict) and set(value) == {"expected"}:
        source = observation.case.expected
        key = value["expected"]
        if not isinstance(source, dict) or key not in source:
            raise LookupError(f"case {observation.case.id!r} has no expected.{key}")
        return source[key]
    return value


def verdict(passed: bool, message: str, **details: Any) -> Outcome:
    return Outcome(passed=passed, message="" if passed else message, score=1.0 if passed else 0.0, details=details)
