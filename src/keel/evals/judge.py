"""LLM-as-judge: a model grades the answer against a rubric and says why.

The judge is asked for JSON {"pass": bool, "score": 0..1, "reason": str} through a json_schema
response format; its verdict, score and reasoning are kept in the outcome's details (and so in
the stored result). A judge that cannot answer fails the assertion with the judge's error.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from ..errors import KeelError
from ._base import Assertion, Environment, Observation, Outcome

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "pass": {"type": "boolean"},
        "score": {"type": "number"},
        "reason": {"type": "string", "maxLength": 120},
    },
    "required": ["pass", "score", "reason"],
    "additionalProperties": False,
}

_SYSTEM = (
    "You are a strict grader. Read the rubric, the input and the answer, then reply with JSON only: "
    '{"pass": true or false, "score": a number from 0 to 1, "reason": one short sentence}.'
)


class LlmJudge(Assertion):
    """A model (`model`, else the suite's judge, else the model under test) grades the answer by the rubric."""

    type: Literal["llm-judge"]
    rubric: str = Field(min_length=1)
    model: str | None = None
    #: The judge's score must also reach this (besides its pass verdict), when set.
    threshold: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int = Field(default=100, ge=16)

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        model = self.model or env.judge_model or observation.model
        question = json.dumps(observation.case.vars, ensure_ascii=False)
        user = f"Rubric:\n{self.rubric}\n\nInput:\n{question}\n\nAnswer:\n{observation.text}"
        tags = {**env.tags, "eval_role": "judge"}
        try:
            response = await env.client.complete(
                [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}],
                model=model, json_schema=VERDICT_SCHEMA, temperature=0, max_tokens=self.max_tokens, tags=tags,
            )
            data = json.loads(response.content)
        except (KeelError, ValueError) as exc:
            return Outcome(False, f"the judge {model} failed: {exc}", 0.0, {"judge": model, "error": str(exc)})
        return self._outcome(model, data, response.trace_id)

    def _outcome(self, model: str, data: Any, trace_id: str) -> Outcome:
        if not isinstance(data, dict) or not isinstance(data.get("pass"), bool):
            return Outcome(False, f"the judge {model} gave no verdict", 0.0, {"judge": model, "raw": data})
        score = data.get("score")
        score = min(1.0, max(0.0, float(score))) if isinstance(score, int | float) else (1.0 if data["pass"] else 0.0)
        reason = str(data.get("reason", ""))
        passed = data["pass"] and (self.threshold is None or score >= self.threshold)
        details = {"judge": model, "verdict": data["pass"], "score": score, "reason": reason, "trace_id": trace_id}
        return Outcome(passed, "" if passed else f"judge: {reason}", score, details)
