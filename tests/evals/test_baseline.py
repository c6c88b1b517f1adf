"""The CI gate: a worse prompt version fails `keel eval run --baseline`, a good one passes, and
`keel check` reports a stale baseline."""

from __future__ import annotations

from pathlib import Path

from testenv import run_keel

from keel.settings import load_settings
from keel.store import open_store

PROMPT = """\
model: fake/echo
input:
  animal: string
messages:
  - role: user
    content: "{template}"
"""

SUITE = """\
prompts: [animals]
models: [fake/echo]
dataset:
  cases:
""" + "".join(f"    - {{id: c{i}, vars: {{animal: {a}}}, expected: {{animal: {a}}}}}\n" for i, a in enumerate(
    ["cat", "dog", "owl", "eel", "yak", "emu", "fox", "bee"])) + """\
assertions:
  - {type: contains, value: {expected: animal}}
thresholds: {pass_rate: 0}
"""


def keel(project: Path, *args: str, ok: bool = True) -> str:
    result = run_keel(project, *args, ok=ok)
    return result.stdout + result.stderr


def _write_prompt(project: Path, template: str) -> None:
    (project / "prompts").mkdir(exist_ok=True)
    (project / "prompts" / "animals.prompt.yaml").write_text(PROMPT.format(template=template))


def _latest_run(project: Path) -> str:
    with open_store(load_settings(path=project / "keel.toml").effective_store_url) as store:
        return store.list_eval_runs(limit=1)[0]["id"]


def test_baseline_gate_and_stale_baseline(project: Path) -> None:
    (project / "keel.toml").write_text("[cache]\nenabled = false\n")
    (project / "evals").mkdir()
    (project / "evals" / "animals.eval.yaml").write_text(SUITE)
    _write_prompt(project, "Tell me about the {{ animal }}")
    keel(project, "lock")
    assert "no baseline" in keel(project, "eval", "run", "evals/animals.eval.yaml", "--baseline", ok=False)

    keel(project, "eval", "run", "evals/animals.eval.yaml")
    good = _latest_run(project)
    assert "baseline" in keel(project, "lock", "--baseline", good[:10])
    assert "up to date" in keel(project, "check")
    assert "no significant regression" in keel(project, "eval", "run", "evals/animals.eval.yaml", "--fresh", "--baseline")

    _write_prompt(project, "Tell me about an animal {{ animal[:0] }}")  # worse: the answer never names it
    keel(project, "lock")
    stale = keel(project, "check", ok=False)
    assert "stale" in stale and "animals" in stale
    regression = keel(project, "eval", "run", "evals/animals.eval.yaml", "--baseline", ok=False)
    assert "regression" in regression and "100.0% → 0.0%" in regression and "8 broken" in regression


def test_migrate_reports_what_moving_the_pin_changes(project: Path) -> None:
    (project / "keel.toml").write_text(
        '[providers.other]\ntype = "fake"\n'
        '[models.old]\nprovider = "fake"\nmodel = "v1"\n[models.old.price]\ninput_per_mtok = 1\noutput_per_mtok = 2\n'
        '[models.new]\nprovider = "other"\nmodel = "v2"\n[models.new.price]\ninput_per_mtok = 3\noutput_per_mtok = 6\n'
    )
    (project / "evals").mkdir()
    (project / "evals" / "animals.eval.yaml").write_text(SUITE)
    _write_prompt(project, "Tell me about the {{ animal }}")
    report = keel(project, "eval", "migrate", "evals/animals.eval.yaml", "--from", "old", "--to", "new")
    assert "old → new" in report and "100.0% → 100.0%" in report
    # 8 cases × (5 prompt + 6 completion words): old costs 8 × (5 × 1 + 6 × 2) / 1e6, new three times that
    assert "0.000136 → 0.000408" in report
    assert "Unknown model 'nope'" in keel(project, "eval", "migrate", "evals/animals.eval.yaml", "--from", "old", "--to", "nope", ok=False)
