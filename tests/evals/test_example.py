"""evals/example.eval.yaml end to end on the real local model (small: two cases, repeat 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_support import run_suite

from keel.evals.suite import load_suite

EXAMPLE = Path(__file__).resolve().parents[2] / "evals" / "example.eval.yaml"


def test_the_example_suite_loads_and_uses_every_assertion_type() -> None:
    from keel.evals.assertions import TYPE_NAMES

    suite = load_suite(EXAMPLE)
    assert {a.type for a in suite.assertions} == set(TYPE_NAMES)
    assert suite.config.models == ["local"] and suite.config.repeat == 2


@pytest.mark.local_model
def test_the_example_suite_runs_on_the_local_model(project: Path) -> None:
    folder = project / "evals"
    folder.mkdir()
    lines = (EXAMPLE.parent / "example.cases.jsonl").read_text().splitlines()[:2]
    (folder / "example.cases.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "example_checks.py").write_text((EXAMPLE.parent / "example_checks.py").read_text())
    (folder / "example.eval.yaml").write_text(EXAMPLE.read_text())
    result = run_suite(folder / "example.eval.yaml")
    [cell] = result.summary["cells"]
    assert cell["items"] == 4 and cell["model"] == "local" and cell["cost"] == "0"
    assert cell["pass_rate"] >= 0.5 and result.passed
    assert cell["semantic_consistency"] is not None and cell["semantic_consistency"] > 0.9  # temperature 0
