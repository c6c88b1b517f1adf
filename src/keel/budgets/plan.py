"""A reservation worked out once and reused by every call alike: the request path's short way.

Calls with the same target, the same scope values and the same output limit reserve on the same
buckets at the same flat rates; only their prompts differ. A Plan keeps, for each matched budget,
its bucket and, per candidate model, the input price per token and the fixed part of the worst
case (output tokens × output price), in integer picodollars, so a call's holds cost one integer
multiplication and one addition per model (Decimal arithmetic costs ten times as much). A plan
lasts until the first of its buckets' periods ends or the UTC day ends (rates are resolved per
day). Candidates without a flat rate (tiered or unknown prices, or a price finer than a
picodollar per token) get no plan: the stage prices those calls one by one (`BudgetStage._holds`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..settings import BudgetSettings
from ..types import ChatRequest
from .ledger import PICOS_PER_UNIT, Bucket, Hold
from .worst_case import Picos, Priced, Rates, output_tokens

#: A candidate model's (input price per token, output tokens × output price) for one budget, in picodollars.
Pricing = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Plan:
    #: Per matched budget: its bucket and each candidate model's pricing (None: price per call).
    entries: tuple[tuple[Bucket, tuple[Pricing, ...]], ...] | None
    #: Unix time from which the plan no longer holds.
    until: float
    #: The target's own flat rate (picodollars per input, output, cached token), to settle the
    #: calls it answers; None when it has none.
    picos: Picos | None = None

    def holds(self, prompt: int) -> list[Hold]:
        """A hold of the worst case on each bucket, for a prompt of at most `prompt` tokens."""
        assert self.entries is not None
        out = []
        for bucket, models in self.entries:
            if len(models) == 1:  # no fallbacks: the common case, without a generator
                worst = prompt * models[0][0] + models[0][1]
            else:
                worst = max(prompt * rate + fixed for rate, fixed in models)
            out.append(Hold(bucket, -(-worst // PICOS_PER_UNIT)))  # rounded up: never undercounts
        return out


def make_plan(
    request: ChatRequest,
    matched: Sequence[tuple[BudgetSettings, str]],
    models: list[Priced],
    rates: Rates,
    bucket: Callable[[BudgetSettings, str, float], tuple[Bucket, float]],
    at: float,
) -> Plan:
    """The plan for calls like this one at Unix time `at`; `bucket(budget, label, at)` gives the
    bucket and the end of its period."""
    until = (math.floor(at / 86400) + 1) * 86400.0
    flat = [rate for model in models if (rate := rates.picos(model, at)) is not None]
    if len(flat) < len(models):
        return Plan(None, until)
    entries = []
    for budget, label in matched:
        found, ends = bucket(budget, label, at)
        until = min(until, ends)
        output = output_tokens(request, budget.reserve_max_tokens)
        entries.append((found, tuple((rate[0], output * rate[1]) for rate in flat)))
    return Plan(tuple(entries), until, flat[0])
