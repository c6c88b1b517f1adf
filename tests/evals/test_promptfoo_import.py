"""A promptfoo config becomes a Keel suite that runs; what cannot be carried over is listed."""

from __future__ import annotations

from pathlib import Path

import yaml
from testenv import run_keel

PROMPTFOO = """\
description: Greeting checks
prompts:
  - "Say hello to {{name}}"
  - file://chat.json
providers:
  - openai:gpt-4o-mini
  - id: anthropic:messages:claude-unknown
defaultTest:
  assert:
    - type: icontains
      value: hello
tests:
  - description: Ada
    vars: {name: Ada}
    assert:
      - {type: contains, value: "{{name}}", weight: 2}
      - {type: javascript, value: "output.length < 100"}
  - vars: {name: Bob}
    assert:
      - {type: regex, value: "B.b"}
      - {type: llm-rubric, value: is friendly}
      - {type: latency, threshold: 5000}
outputPath: results.json
"""


def keel(project: Path, *args: str, ok: bool = True) -> str:
    result = run_keel(project, *args, ok=ok)
    return result.stdout + result.stderr


def test_import_maps_what_it_can_and_lists_the_rest(project: Path) -> None:
    (project / "keel.toml").write_text('[models.mini]\nprovider = "fake"\nmodel = "gpt-4o-mini"\n')
    (project / "promptfooconfig.yaml").write_text(PROMPTFOO)
    (project / "chat.json").write_text('[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello {{name}}"}]')
    out = keel(project, "eval", "import", "promptfooconfig.yaml", "-o", "evals/greet.eval.yaml")
    assert "2 prompts × 1 models, 2 cases" in out
    assert "'javascript' has no Keel equivalent" in out
    assert "claude-unknown" in out and "'outputPath'" in out
    suite = yaml.safe_load((project / "evals" / "greet.eval.yaml").read_text())
    assert suite["models"] == ["mini"]
    assert suite["assertions"] == [{"type": "contains", "value": "hello", "case_sensitive": False}]
    ada, bob = suite["dataset"]["cases"]
    assert ada["assertions"] == [{"type": "contains", "value": {"expected": "name"}, "weight": 2}]
    assert [a["type"] for a in bob["assertions"]] == ["regex", "llm-judge", "latency"]
    assert suite["prompts"][1]["messages"][0] == {"role": "system", "content": "Be kind."}
    assert "already exists" in keel(project, "eval", "import", "promptfooconfig.yaml", "-o", "evals/greet.eval.yaml", ok=False)


def test_imported_suite_runs(project: Path) -> None:
    (project / "keel.toml").write_text('[models.mini]\nprovider = "fake"\nmodel = "gpt-4o-mini"\n')
    (project / "promptfooconfig.yaml").write_text(
        'prompts: ["Hello {{name}}"]\nproviders: [openai:gpt-4o-mini]\n'
        'tests:\n  - vars: {name: Ada}\n    assert: [{type: contains, value: "{{name}}"}, {type: icontains, value: HELLO}]\n'
    )
    keel(project, "eval", "import", "promptfooconfig.yaml", "-o", "evals/p.eval.yaml")
    assert "100.0%" in keel(project, "eval", "run", "evals/p.eval.yaml")


def test_bad_promptfoo_files(project: Path) -> None:
    assert "file not found" in keel(project, "eval", "import", "missing.yaml", ok=False)
    (project / "bad.yaml").write_text("prompts: [\n")
    assert "invalid YAML" in keel(project, "eval", "import", "bad.yaml", ok=False)
    (project / "empty.yaml").write_text("prompts: [hi]\nproviders: [openai:nothing-here]\ntests: []\n")
    assert "no usable providers, tests" in keel(project, "eval", "import", "empty.yaml", ok=False)
