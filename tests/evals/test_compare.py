"""Comparing runs: McNemar's exact test by hand, the bootstrap interval, pairing rules."""

from __future__ import annotations

import pytest

from keel.errors import ConfigError
from keel.evals.compare import compare_runs, mcnemar_exact, paired_bootstrap


def test_mcnemar_exact_by_hand() -> None:
    # b=1, c=6: n=7, P(X<=1) = (C(7,0)+C(7,1))/2^7 = 8/128; two-sided p = 16/128 = 0.125
    assert mcnemar_exact(1, 6) == pytest.approx(0.125)
    # b=0, c=5: 2 * 1/32 = 0.0625
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0


def _rows(passes: list[bool], model: str = "m", cost: str | None = "0.01") -> list[dict[str, object]]:
    return [{"case_id": f"c{i}", "prompt": "p", "model": model, "repeat": 0, "passed": p, "output": str(p),
             "cost": cost, "latency_ms": 100.0 * (i + 1)} for i, p in enumerate(passes)]


def test_compare_counts_fixed_and_broken() -> None:
    a = _rows([True, False, False, False, False, False, False, True, True, True])
    b = _rows([False, True, True, True, True, True, True, True, True, True])
    report = compare_runs(a, b)
    assert (report["paired"], report["fixed"], report["broken"]) == (10, 6, 1)
    assert report["mcnemar_p"] == pytest.approx(0.125)
    assert report["pass_rate_a"] == 0.4 and report["pass_rate_b"] == 0.9 and report["delta"] == pytest.approx(0.5)
    low, high = report["delta_ci95"]
    assert -0.1 <= low <= 0.1 and 0.8 <= high <= 1.0  # not significant at n=10, as McNemar agrees
    assert report["cost_a"] == report["cost_b"] == "0.10" and len(report["changes"]) == 7


def test_unknown_cost_and_model_to_model_pairing() -> None:
    report = compare_runs(_rows([True, False], model="old"), _rows([True, True], model="new", cost=None))
    assert report["paired"] == 2 and report["cost_b"] is None and report["fixed"] == 1
    with pytest.raises(ConfigError, match="different prompt"):
        compare_runs(_rows([True]) + _rows([True], model="x"), _rows([True], model="y"))


def test_bootstrap_is_deterministic_and_degenerate_cases() -> None:
    pairs = [(False, True)] * 3 + [(True, True)] * 7
    assert paired_bootstrap(pairs) == paired_bootstrap(pairs)
    assert paired_bootstrap([(True, True)] * 5) == (0.0, 0.0)
    assert paired_bootstrap([]) == (0.0, 0.0)
