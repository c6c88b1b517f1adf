"""Budget figures for humans: per budget and bucket, the limit, what is spent and held in flight."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..settings import Settings
from .ledger import Ledger
from .scope import Scope, period_of


async def budget_status(settings: Settings, ledger: Ledger, at: datetime | None = None) -> list[dict[str, Any]]:
    """One row per bucket of the current period (UTC, or `at`), in the order budgets are configured.

    A bucket that no call has touched yet is listed when it is known in advance (global,
    tag:NAME=VALUE, prompt:NAME); per-key, per-tenant and per-tag-value buckets appear once used.
    Amounts are Decimals; `remaining` is limit − spent − reserved (negative once a soft budget is
    past its limit).
    """
    now = at or datetime.now(UTC)
    rows = []
    for budget in settings.budgets:
        period, _ = period_of(budget.period, now)
        states = await ledger.buckets(budget.name, period)
        if not states:
            fixed = _fixed_bucket(Scope.parse(budget.scope, budget.name))
            found = [(fixed, 0, 0)] if fixed else []
        else:
            found = [(s.scope, s.spent, s.reserved) for s in states]
        for scope, spent, reserved in found:
            rows.append({
                "budget": budget.name,
                "scope": scope,
                "period": period,
                "hard": budget.hard,
                "limit": budget.limit,
                "spent": spent,
                "reserved": reserved,
                "remaining": budget.limit - spent - reserved,
            })
    return rows


def _fixed_bucket(scope: Scope) -> str | None:
    if scope.kind == "global":
        return "global"
    if scope.kind == "prompt":
        return f"prompt={scope.name}"
    if scope.value is not None:
        return f"{scope.name}={scope.value}"
    return None
