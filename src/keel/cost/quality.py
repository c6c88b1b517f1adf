"""Quality against cost across eval runs: per suite, each prompt × model pair's pass rate,
consistency and cost per 1,000 requests, the Pareto front, and the cheapest pair that passes.

Pure functions over finished runs' stored summaries (keel.evals.summary). A pair measured by
several runs of one suite is taken from the newest. Unknown costs stay unknown: such a pair is
never on the front, never "cheapest", and its projected cost is None.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..evals.pareto import cost_per_thousand, pareto_front


@dataclass(frozen=True)
class QualityRow:
    suite: str
    prompt: str
    model: str
    run_id: str
    pass_rate: float
    consistency: float
    passes: bool
    items: int
    per_thousand: Decimal | None
    on_front: bool = False
    cheapest_passing: bool = False

    def monthly(self, requests: Decimal) -> Decimal | None:
        return None if self.per_thousand is None else self.per_thousand * requests / 1000

    def as_dict(self, traffic: Decimal | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "suite": self.suite, "prompt": self.prompt, "model": self.model, "run": self.run_id,
            "pass_rate": self.pass_rate, "consistency": self.consistency, "passes": self.passes, "items": self.items,
            "cost_per_1k_requests": None if self.per_thousand is None else str(self.per_thousand),
            "pareto_front": self.on_front, "cheapest_passing": self.cheapest_passing,
        }
        if traffic is not None:
            monthly = self.monthly(traffic)
            row["monthly_cost"] = None if monthly is None else str(monthly)
        return row


def quality_rows(runs: list[dict[str, Any]]) -> list[QualityRow]:
    """Rows per suite (in suite order), best pass rate first; `runs` are stored eval runs."""
    newest: dict[tuple[str, str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
    for run in sorted(runs, key=lambda r: r["started_at"]):
        for cell in (run.get("summary") or {}).get("cells", []):
            newest[(run["suite"], cell["prompt"], cell["model"])] = (run, cell)
    rows: list[QualityRow] = []
    for suite in sorted({key[0] for key in newest}):
        pairs = [pair for key, pair in newest.items() if key[0] == suite]
        rows.extend(_suite_rows(suite, pairs))
    return rows


def _suite_rows(suite: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[QualityRow]:
    cells = [cell for _, cell in pairs]
    front = pareto_front(cells)
    passing = [c for c in cells if c["ok"] and cost_per_thousand(c) is not None]
    cheapest = min(passing, key=lambda c: (cost_per_thousand(c), -c["pass_rate"])) if passing else None
    rows = [
        QualityRow(
            suite=suite, prompt=cell["prompt"], model=cell["model"], run_id=run["id"],
            pass_rate=cell["pass_rate"], consistency=cell["consistency"], passes=cell["ok"], items=cell["items"],
            per_thousand=cost_per_thousand(cell), on_front=(cell["prompt"], cell["model"]) in front,
            cheapest_passing=cell is cheapest,
        )
        for run, cell in pairs
    ]
    return sorted(rows, key=lambda r: (-r.pass_rate, r.per_thousand is None, r.per_thousand or 0, r.prompt, r.model))
