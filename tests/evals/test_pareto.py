"""The Pareto front of quality against cost."""

from __future__ import annotations

from decimal import Decimal

from keel.evals.pareto import cost_per_thousand, pareto_front


def cell(model: str, pass_rate: float, cost: str | None, items: int = 10) -> dict:
    return {"prompt": "p", "model": model, "pass_rate": pass_rate, "cost": cost, "items": items}


def test_front_keeps_the_cheapest_that_passes_and_the_best() -> None:
    cells = [
        cell("cheap-bad", 0.5, "0.001"),      # cheapest: on the front
        cell("mid-good", 0.9, "0.010"),       # on the front
        cell("pricey-same", 0.9, "0.050"),    # dominated by mid-good
        cell("pricey-best", 1.0, "0.100"),    # best quality: on the front
        cell("unknown", 1.0, None),           # unknown cost: never on the front
    ]
    assert pareto_front(cells) == {("p", "cheap-bad"), ("p", "mid-good"), ("p", "pricey-best")}
    assert cost_per_thousand(cells[1]) == Decimal("1.000")  # $0.010 over 10 requests → $1 per 1,000
    assert cost_per_thousand(cells[4]) is None
