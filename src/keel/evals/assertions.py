"""Every assertion type by its `type` name, and scoring an answer with a list of them.

A case's score is the weighted mean of its assertions' credit (1 for a pass, else the partial
score a graded assertion gave); the case passes when that reaches its threshold (default 1.0:
every assertion passed).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from ._base import Assertion, Environment, Observation, Outcome
from .checks import Contains, CostCheck, Equals, JsonPath, JsonSchema, JsonValid, Latency, Length, NotContains, Numeric, Regex, StartsWith
from .functions import PythonCheck
from .judge import LlmJudge
from .pii import NoPii
from .similarity import Similar

TYPES: tuple[type[Assertion], ...] = (
    Equals, Contains, NotContains, StartsWith, Regex, JsonValid, JsonSchema, JsonPath, Numeric, Length,
    Latency, CostCheck, PythonCheck, NoPii, LlmJudge, Similar,
)
TYPE_NAMES = [cls.model_fields["type"].annotation.__args__[0] for cls in TYPES]  # type: ignore[union-attr]

AnyAssertion = Annotated[
    Equals | Contains | NotContains | StartsWith | Regex | JsonValid | JsonSchema | JsonPath | Numeric | Length
    | Latency | CostCheck | PythonCheck | NoPii | LlmJudge | Similar,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(list[AnyAssertion])


def parse_assertions(data: Any) -> list[Assertion]:
    """Validate a list of assertion mappings (pydantic ValidationError when one is wrong)."""
    return list(_ADAPTER.validate_python(data))


async def score(assertions: list[Assertion], observation: Observation, env: Environment) -> tuple[float, list[dict[str, Any]]]:
    """The weighted score of the answer, and each assertion's outcome as a plain dict."""
    outcomes: list[dict[str, Any]] = []
    total = weights = 0.0
    for assertion in assertions:
        try:
            outcome = await assertion.evaluate(observation, env)
        except LookupError as exc:  # e.g. {expected: key} the case does not have
            outcome = Outcome(False, f"{exc}", 0.0)
        total += assertion.weight * outcome.credit
        weights += assertion.weight
        outcomes.append({
            "type": assertion.type, "name": assertion.describe(), "weight": assertion.weight,
            "passed": outcome.passed, "score": outcome.score, "message": outcome.message, "details": outcome.details,
        })
    return (total / weights if weights else 1.0), outcomes
