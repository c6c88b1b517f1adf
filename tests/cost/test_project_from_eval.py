"""`keel cost project` on the traces of evals/example.eval.yaml run on the real local model,
checked against figures computed here by hand from the run's stored answers."""

from __future__ import annotations

import csv
import math
import shutil
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from eval_support import run_suite
from typer.testing import CliRunner

from keel.cli.cost_project import project
from keel.errors import ConfigError
from keel.settings import load_settings
from keel.store import open_store

EVALS = Path(__file__).resolve().parents[2] / "evals"
M = Decimal(1_000_000)
CONFIG = """
[models.api]
provider = "fake"
model = "api"
[models.api.price]
input_per_mtok = 0.15
output_per_mtok = 0.6

[models.gpu]
provider = "fake"
model = "gpu"
[models.gpu.price]
per_hour = 1.2
tokens_per_second = 50

[providers.selfhosted]
type = "fake"
pricing_id = "none"

[models.mystery]
provider = "selfhosted"
model = "mystery-7b"
"""


def invoke(*args: str):  # type: ignore[no-untyped-def]
    app = typer.Typer()
    app.command()(project)
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory, local_provider: object) -> tuple[Path, str]:
    """The example suite (its first two cases, repeat 2) run once on the local model."""
    root = tmp_path_factory.mktemp("example")
    folder = root / "evals"
    folder.mkdir()
    for name in ("example.eval.yaml", "example_checks.py"):
        shutil.copy(EVALS / name, folder / name)
    lines = (EVALS / "example.cases.jsonl").read_text().splitlines()[:2]
    (folder / "example.cases.jsonl").write_text("\n".join(lines) + "\n")
    (root / "keel.toml").write_text(CONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = run_suite(folder / "example.eval.yaml")
    return root, result.run_id


@pytest.mark.local_model
def test_projection_of_the_example_suite_matches_a_hand_computation(example_run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    root, run_id = example_run
    monkeypatch.chdir(root)
    with open_store(load_settings().effective_store_url) as store:
        answers = [r for r in store.eval_results(run_id) if r.get("trace_id")]
        traces = [store.get_trace(r["trace_id"]) for r in answers]
    assert len(traces) == 4  # 2 cases × repeat 2; the judge's calls are not the feature's traffic
    prompt_tokens = [t["prompt_tokens"] for t in traces]
    completion_tokens = [t["completion_tokens"] for t in traces]
    assert all(p > 20 for p in prompt_tokens) and all(c > 3 for c in completion_tokens)
    mean_in, mean_out = Decimal(sum(prompt_tokens)) / 4, Decimal(sum(completion_tokens)) / 4
    api_per_request = (mean_in * Decimal("0.15") + mean_out * Decimal("0.6")) / M
    # one gpu instance serves 50 × 3600 × 730 tokens a month for 1.2 × 730 dollars
    per_instance = Decimal(50 * 3600 * 730) / (mean_in + mean_out)
    gpu_instances = {v: max(1, math.ceil(Decimal(v) / per_instance)) for v in (1_000, 100_000, 10_000_000)}

    result = invoke("--eval-run", run_id[:10], "--traffic", "1k,100k,10M", "--models", "api,gpu,mystery",
                    "--csv", "out.csv", "--chart", "out.svg")
    assert result.exit_code == 0, result.output
    assert f"{mean_in:.1f}/" in result.output and " extract " in result.output  # grouped by the suite's prompt
    assert f"${api_per_request * 10_000_000:,.2f}" in result.output
    assert "unknown price" in result.output and "add [models.mystery.price] to keel.toml" in result.output
    with open(root / "out.csv", newline="") as handle:
        rows = {(r["model"], int(r["requests_per_month"])): r for r in csv.DictReader(handle)}
    places = Decimal("1e-15")
    for volume in (1_000, 100_000, 10_000_000):
        assert rows[("api", volume)]["group"] == "extract"
        assert Decimal(rows[("api", volume)]["monthly_cost"]).quantize(places) == (api_per_request * volume).quantize(places)
        assert Decimal(rows[("gpu", volume)]["monthly_cost"]) == Decimal("1.2") * 730 * gpu_instances[volume]
        assert rows[("mystery", volume)]["monthly_cost"] == "" and rows[("mystery", volume)]["note"].startswith("unknown price")
    root_svg = ET.fromstring((root / "out.svg").read_text())
    assert len(root_svg.findall("{http://www.w3.org/2000/svg}polyline")) == 2  # api and gpu; mystery is not drawn


@pytest.mark.local_model
def test_unknown_eval_run_and_a_prompt_the_run_lacks(example_run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    root, run_id = example_run
    monkeypatch.chdir(root)
    missing = invoke("--eval-run", "ffff0000", "--traffic", "1k")
    assert isinstance(missing.exception, ConfigError) and "No eval run 'ffff0000'" in str(missing.exception)
    other = invoke("--eval-run", run_id, "--prompt", "summarize", "--traffic", "1k")
    assert isinstance(other.exception, ConfigError)
    assert "No trace data for prompt 'summarize' in eval run" in str(other.exception)
