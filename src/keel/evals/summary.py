"""A run's figures per prompt × model cell, from its stored results, and the threshold verdict.

`cached` counts the answers that came from the response cache: their tokens and latency are those
of the call that produced them, their cost what that call costs (see runner.py).
Costs add up only while every answer's cost is known: one unknown makes the cell's cost unknown
(None) and is counted in `cost_unknown`, never summed as zero.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from decimal import Decimal
from typing import Any

from .consistency import case_consistency, pass_at_k, pass_hat_k, semantic_consistency, uses_similar, wilson_interval


def summarize(results: list[dict[str, Any]], thresholds: dict[str, Any], repeat: int) -> dict[str, Any]:
    """{"cells": [...], "passed": bool, "failures": [messages]} for a run's results."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in results:
        cells[(row["prompt"], row["model"])].append(row)
    summaries = [_cell(prompt, model, rows, thresholds, repeat) for (prompt, model), rows in sorted(cells.items())]
    failures = [message for cell in summaries for message in cell["failures"]]
    return {"cells": summaries, "passed": bool(summaries) and not failures, "failures": failures}


def _cell(prompt: str, model: str, rows: list[dict[str, Any]], thresholds: dict[str, Any], repeat: int) -> dict[str, Any]:
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_case[row["case_id"]].append(row)
    passed = sum(1 for row in rows if row["passed"])
    low, high = wilson_interval(passed, len(rows))
    k = max(1, min(repeat, min(len(group) for group in by_case.values())))
    min_case = thresholds.get("min_pass_rate")
    case_rates = {case: sum(r["passed"] for r in group) / len(group) for case, group in by_case.items()}
    required = min_case if min_case is not None else 1.0
    cell = {
        "prompt": prompt, "model": model, "items": len(rows), "passed": passed,
        "pass_rate": passed / len(rows), "ci95": [low, high],
        "cases": len(by_case), "cases_passed": sum(1 for rate in case_rates.values() if rate >= required),
        "k": k,
        "pass_at_k": _mean(pass_at_k(len(g), sum(r["passed"] for r in g), k) for g in by_case.values()),
        "pass_hat_k": _mean(pass_hat_k(len(g), sum(r["passed"] for r in g), k) for g in by_case.values()),
        "consistency": _mean(_consistency(g) for g in by_case.values()),
        "semantic_consistency": semantic_consistency([[_text(r) for r in g] for g in by_case.values()]) if uses_similar(rows) else None,
        "mean_score": _mean(float(r["score"]) for r in rows),
        "errors": sum(1 for row in rows if row.get("error")),
        "cached": sum(1 for row in rows if row.get("cached")),
        "prompt_tokens": sum(row.get("prompt_tokens") or 0 for row in rows),
        "completion_tokens": sum(row.get("completion_tokens") or 0 for row in rows),
        **_cost(rows), **_latency(rows),
    }
    cell["failures"] = _failures(cell, case_rates, thresholds)
    cell["ok"] = not cell["failures"]
    return cell


def _failures(cell: dict[str, Any], case_rates: dict[str, float], thresholds: dict[str, Any]) -> list[str]:
    where = f"{cell['prompt']} × {cell['model']}"
    failures = []
    want = float(thresholds.get("pass_rate", 1.0))
    if cell["pass_rate"] < want:
        failures.append(f"{where}: pass rate {cell['pass_rate']:.1%} < {want:.0%}")
    min_case = thresholds.get("min_pass_rate")
    if min_case is not None:
        for case, rate in sorted(case_rates.items()):
            if rate < min_case:
                failures.append(f"{where}: case {case} passed {rate:.0%} of its repeats < {min_case:.0%}")
    return failures


def _cost(rows: list[dict[str, Any]]) -> dict[str, Any]:
    known = [Decimal(str(row["cost"])) for row in rows if row.get("cost") is not None]
    unknown = len(rows) - len(known)
    return {"cost": str(sum(known, Decimal(0))) if not unknown else None, "cost_unknown": unknown,
            "cost_known_part": str(sum(known, Decimal(0)))}


def _latency(rows: list[dict[str, Any]]) -> dict[str, Any]:
    values = sorted(float(row["latency_ms"]) for row in rows if row.get("latency_ms") is not None)
    if not values:
        return {"latency_p50_ms": None, "latency_p95_ms": None, "latency_mean_ms": None}
    p95 = values[min(len(values) - 1, max(0, round(0.95 * len(values)) - 1))]
    return {"latency_p50_ms": statistics.median(values), "latency_p95_ms": p95, "latency_mean_ms": statistics.fmean(values)}


def _consistency(group: list[dict[str, Any]]) -> float:
    """A case's consistency; one answer always agrees with itself (no need to parse it)."""
    return 1.0 if len(group) == 1 else case_consistency([_text(r) for r in group])


def _text(row: dict[str, Any]) -> str:
    return row["output"] if row.get("output") is not None else f"<error: {row.get('error')}>"


def _mean(values: Any) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0
