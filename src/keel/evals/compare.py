"""Comparing two runs answer by answer: what changed, and whether the change is more than noise.

Answers are paired by (case, repeat), and by prompt and model when both runs have the same cells
(otherwise each run must have exactly one cell, e.g. one model against another). The pass-rate
change is tested with McNemar's exact test: under "no difference" each discordant pair (passed in
one run only) is a fair coin, so p = P(Binomial(b + c, 1/2) at least as far from even as observed),
two-sided. The 95% interval of the change comes from a paired bootstrap (fixed seed).
"""

from __future__ import annotations

import math
import random
import statistics
from decimal import Decimal
from typing import Any

from ..errors import ConfigError

BOOTSTRAP_SAMPLES = 2000


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap(pairs: list[tuple[bool, bool]], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """95% interval of pass_rate(B) - pass_rate(A) by resampling the pairs."""
    if not pairs:
        return 0.0, 0.0
    rng = random.Random(seed)
    diffs = [int(b) - int(a) for a, b in pairs]
    n = len(diffs)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(samples))
    return means[int(0.025 * samples)], means[min(samples - 1, int(0.975 * samples))]


def compare_runs(results_a: list[dict[str, Any]], results_b: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-answer differences and the figures of the change from run A to run B."""
    key = _pairing(results_a, results_b)
    a = {key(row): row for row in results_a}
    b = {key(row): row for row in results_b}
    shared = sorted(set(a) & set(b))
    pairs = [(bool(a[k]["passed"]), bool(b[k]["passed"])) for k in shared]
    fixed = sum(1 for x, y in pairs if not x and y)
    broken = sum(1 for x, y in pairs if x and not y)
    rate_a = sum(x for x, _ in pairs) / len(pairs) if pairs else 0.0
    rate_b = sum(y for _, y in pairs) / len(pairs) if pairs else 0.0
    changes = [{"key": list(k), "a_passed": a[k]["passed"], "b_passed": b[k]["passed"],
                "a_output": a[k].get("output"), "b_output": b[k].get("output")}
               for k in shared if bool(a[k]["passed"]) != bool(b[k]["passed"])]
    return {
        "paired": len(shared), "only_a": len(set(a) - set(b)), "only_b": len(set(b) - set(a)),
        "pass_rate_a": rate_a, "pass_rate_b": rate_b, "delta": rate_b - rate_a,
        "fixed": fixed, "broken": broken, "mcnemar_p": mcnemar_exact(fixed, broken),
        "delta_ci95": list(paired_bootstrap(pairs)),
        "cost_a": _cost(a[k] for k in shared), "cost_b": _cost(b[k] for k in shared),
        "latency_mean_a": _latency(a[k] for k in shared), "latency_mean_b": _latency(b[k] for k in shared),
        "changes": changes,
    }


def _pairing(results_a: list[dict[str, Any]], results_b: list[dict[str, Any]]) -> Any:
    cells_a = {(r["prompt"], r["model"]) for r in results_a}
    cells_b = {(r["prompt"], r["model"]) for r in results_b}
    if cells_a == cells_b:
        return lambda row: (row["prompt"], row["model"], row["case_id"], row["repeat"])
    if len(cells_a) == 1 and len(cells_b) == 1:
        return lambda row: (row["case_id"], row["repeat"])
    raise ConfigError("These runs have different prompt × model cells; compare runs of one cell each, or of the same cells.")


def _cost(rows: Any) -> str | None:
    """Total cost, or None when any answer's cost is unknown."""
    total = Decimal(0)
    for row in rows:
        if row.get("cost") is None:
            return None
        total += Decimal(str(row["cost"]))
    return str(total)


def _latency(rows: Any) -> float | None:
    values = [float(r["latency_ms"]) for r in rows if r.get("latency_ms") is not None]
    return statistics.fmean(values) if values else None
