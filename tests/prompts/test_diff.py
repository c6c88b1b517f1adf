"""Unified diffs of definitions, templates and rendered messages."""

from __future__ import annotations

from pathlib import Path

from keel.prompts import PromptSpec, diff_definitions, diff_rendered, diff_templates, diff_text
from keel.prompts.diff import definition_text


def load_pair(prompts_dir: Path) -> tuple[PromptSpec, PromptSpec]:
    path = prompts_dir / "summarize.prompt.yaml"
    old = PromptSpec.load(path)
    path.write_text(path.read_text().replace("Summarize in", "Write").replace("temperature: 0", "temperature: 0.2"))
    return old, PromptSpec.load(path)


def test_diff_text() -> None:
    assert diff_text("a\nb\n", "a\nb\n") == ""
    assert diff_text("a\nb", "a\nc", "x", "y") == "--- x\n+++ y\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"


def test_diff_definitions_shows_params_and_template_lines(prompts_dir: Path) -> None:
    old, new = load_pair(prompts_dir)
    text = diff_definitions(old, new)
    assert text.startswith(f"--- summarize@{old.short_version}\n+++ summarize@{new.short_version}\n")
    assert "-  temperature: 0\n+  temperature: 0.2\n" in text
    assert "-    Summarize in {{ bullets }} bullets:\n+    Write {{ bullets }} bullets:\n" in text


def test_diff_templates_ignores_everything_but_templates(prompts_dir: Path) -> None:
    old, new = load_pair(prompts_dir)
    text = diff_templates(old, new)
    assert "temperature" not in text
    assert "-Summarize in {{ bullets }} bullets:\n+Write {{ bullets }} bullets:\n" in text
    assert diff_templates(old, old) == ""


def test_a_partial_edit_shows_in_the_diff(prompts_dir: Path) -> None:
    old = PromptSpec.load(prompts_dir / "summarize.prompt.yaml")
    (prompts_dir / "partials" / "tone.j2").write_text("Be warm.")
    new = PromptSpec.load(prompts_dir / "summarize.prompt.yaml")
    assert "## partial tone.j2\n-Be brief and neutral.\n+Be warm.\n" in diff_templates(old, new)


def test_stored_definitions_diff_like_specs(prompts_dir: Path) -> None:
    old, new = load_pair(prompts_dir)
    from_store = diff_definitions(old.definition(), new.definition())
    assert from_store.splitlines()[2:] == diff_definitions(old, new).splitlines()[2:]
    assert from_store.startswith(f"--- @{old.short_version}\n")


def test_diff_rendered_uses_reference_input_by_default(prompts_dir: Path) -> None:
    old, new = load_pair(prompts_dir)
    assert "-Summarize in 2 bullets:\n+Write 2 bullets:\n" in diff_rendered(old, new)
    assert "-Summarize in 5 bullets:\n+Write 5 bullets:\n" in diff_rendered(old, new, {"text": "t", "bullets": 5})


def test_definition_text_is_stable_yaml(prompts_dir: Path) -> None:
    spec = PromptSpec.load(prompts_dir / "summarize.prompt.yaml")
    text = definition_text(spec)
    assert text.splitlines()[:2] == ["description: Summarize a text in N bullet points", "model: local"]
    assert "  content: |\n    Summarize in {{ bullets }} bullets:\n    {{ text }}\n" in text
    assert definition_text(spec.definition()) == text
