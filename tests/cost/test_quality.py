"""Quality vs cost (`keel cost quality`): real eval runs on priced fake models, figures by hand."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eval_support import run_suite, suite_text, write_suite
from testenv import run_keel

from keel.cost.quality import quality_rows

CONFIG = """
[models.cheap]
provider = "fake"
model = "echo-1"
[models.cheap.price]
input_per_mtok = 2
output_per_mtok = 10

[models.pricey]
provider = "fake"
model = "echo-2"
[models.pricey.price]
input_per_mtok = 20
output_per_mtok = 100

[providers.selfhosted]
type = "fake"
pricing_id = "none"

[models.mystery]
provider = "selfhosted"
model = "m"
"""

WORDY = """  - name: wordy
    messages: [{role: user, content: "Say {{ text }} loudly"}]
"""
SUITE = suite_text("[cheap, pricey, mystery]", WORDY)


@pytest.fixture
def measured(project: Path) -> str:
    (project / "keel.toml").write_text(CONFIG)
    return run_suite(write_suite(project, SUITE)).run_id


def test_cost_quality_marks_the_front_and_the_cheapest_pair_that_passes(measured: str, project: Path) -> None:
    rows = {(r["prompt"], r["model"]): r for r in json.loads(run_keel(project, "cost", "quality", "--format", "json", "--traffic", "100k").stdout)}
    assert set(rows) == {(p, m) for p in ("echo", "wordy") for m in ("cheap", "pricey", "mystery")}
    echo_cheap = rows[("echo", "cheap")]
    # echo: 1 prompt word in, "Echo: one" 2 words out → (1 × 2 + 2 × 10) / 1M = $0.000022 a call
    assert Decimal(echo_cheap["cost_per_1k_requests"]) == Decimal("0.022")
    assert Decimal(echo_cheap["monthly_cost"]) == Decimal("2.2")  # 100k requests
    assert echo_cheap["pass_rate"] == pytest.approx(4 / 6) and echo_cheap["passes"] and echo_cheap["consistency"] == 1.0
    # wordy: 3 words in, "Echo: Say one loudly" 4 out → (3 × 20 + 4 × 100) / 1M on pricey = $0.46 per 1,000
    assert Decimal(rows[("wordy", "pricey")]["cost_per_1k_requests"]) == Decimal("0.46")
    assert rows[("wordy", "pricey")]["pass_rate"] == 0 and not rows[("wordy", "pricey")]["passes"]
    assert [k for k, r in rows.items() if r["pareto_front"]] == [("echo", "cheap")]
    assert [k for k, r in rows.items() if r["cheapest_passing"]] == [("echo", "cheap")]
    mystery = rows[("echo", "mystery")]
    assert mystery["cost_per_1k_requests"] is None and mystery["monthly_cost"] is None and not mystery["pareto_front"]


def test_cost_quality_table_and_csv(measured: str, project: Path) -> None:
    table = run_keel(project, "cost", "quality").stdout
    assert "echo × cheap ★ ✓" in table and "$0.0220" in table and "unknown" in table
    assert "s: cheapest pair that passes: echo × cheap" in table
    csv_text = run_keel(project, "cost", "quality", measured[:8], "--format", "csv").stdout
    header, *lines = csv_text.splitlines()
    assert header.startswith("suite,prompt,model,run,pass_rate") and len(lines) == 6


def run(suite: str, started: float, cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": f"run{started}", "suite": suite, "started_at": started, "status": "finished", "summary": {"cells": cells}}


def cell(prompt: str, model: str, rate: float, cost: str | None, ok: bool = True) -> dict[str, Any]:
    return {"prompt": prompt, "model": model, "pass_rate": rate, "consistency": 1.0, "ok": ok, "items": 10, "cost": cost}


def test_newest_run_wins_per_pair_and_no_passing_pair_means_no_cheapest() -> None:
    old = run("s", 1, [cell("p", "a", 0.9, "0.01"), cell("p", "b", 0.5, "0.001", ok=False)])
    new = run("s", 2, [cell("p", "a", 0.4, "0.01", ok=False)])
    other = run("t", 3, [cell("p", "a", 1.0, None)])
    rows = quality_rows([new, old, other])
    by_key = {(r.suite, r.model): r for r in rows}
    assert by_key[("s", "a")].run_id == "run2" and by_key[("s", "a")].pass_rate == 0.4
    assert [r.cheapest_passing for r in rows] == [False, False, False]  # s: nothing passes; t: cost unknown
    assert by_key[("s", "b")].on_front and by_key[("s", "a")].on_front is False  # b is cheaper and passes more
    assert by_key[("t", "a")].per_thousand is None and not by_key[("t", "a")].on_front


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "No finished eval run to compare"),
        (["--suite", "nope"], "No finished eval run of suite 'nope'"),
        (["abc123"], "No eval run 'abc123'"),
        (["--traffic", "1k,2k"], "--traffic takes one level here"),
        (["--traffic", "10X"], "Invalid traffic '10X'"),
        (["--format", "xml"], "--format must be table, csv or json"),
    ],
)
def test_cost_quality_bad_input(project: Path, args: list[str], message: str) -> None:
    result = run_keel(project, "cost", "quality", *args, ok=False)
    assert message in result.stdout + result.stderr
