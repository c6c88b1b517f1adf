"""Quality against cost: each prompt × model cell's cost per 1,000 requests, and the Pareto front
(the cells no other cell beats on both pass rate and cost). Cells of unknown cost are never on it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def cost_per_thousand(cell: dict[str, Any]) -> Decimal | None:
    if cell.get("cost") is None or not cell.get("items"):
        return None
    return Decimal(str(cell["cost"])) / cell["items"] * 1000


def pareto_front(cells: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(prompt, model) of every cell for which no other cell is at least as good on both pass rate
    and cost and strictly better on one: "the cheapest model that still passes" is among them."""
    known = [(c, cost_per_thousand(c)) for c in cells]
    priced = [(c, cost) for c, cost in known if cost is not None]
    front = set()
    for cell, cost in priced:
        dominated = any(
            other["pass_rate"] >= cell["pass_rate"] and other_cost <= cost
            and (other["pass_rate"] > cell["pass_rate"] or other_cost < cost)
            for other, other_cost in priced
        )
        if not dominated:
            front.add((cell["prompt"], cell["model"]))
    return front
