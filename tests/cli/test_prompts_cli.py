"""`keel prompts …` as a person uses it: versions, labels, promote, rollback, history, diff."""

from __future__ import annotations

from pathlib import Path

from testenv import run_keel

PROMPT = """\
description: Say hi
model: fake/echo
input:
  who: string
messages:
  - role: user
    content: "{greeting} {{{{ who }}}}"
"""


def keel(project: Path, *args: str, ok: bool = True) -> str:
    result = run_keel(project, *args, ok=ok)
    return result.stdout if ok else result.stderr


def _write(project: Path, greeting: str) -> None:
    (project / "prompts").mkdir(exist_ok=True)
    (project / "prompts" / "hi.prompt.yaml").write_text(PROMPT.format(greeting=greeting))


def test_promote_edit_promote_rollback_history_and_diff(project: Path) -> None:
    _write(project, "Hello")
    first = keel(project, "prompts", "promote", "hi", "production", "--reason", "first ship")
    assert "hi@production: - →" in first
    _write(project, "Howdy")
    keel(project, "prompts", "promote", "hi", "production", "-r", "friendlier")
    rolled = keel(project, "prompts", "rollback", "hi", "production")
    assert "rolled back" in rolled

    history = keel(project, "prompts", "history", "hi")
    assert history.count("production") == 3 and "first ship" in history and "friendlier" in history and "rollback" in history

    listing = keel(project, "prompts", "list")
    assert "hi" in listing and "production=" in listing

    show = keel(project, "prompts", "show", "hi")
    assert "Howdy" in show and "production" in show

    versions = [line.split()[0] for line in show.splitlines() if line.startswith("  ") and len(line.split()[0]) == 12]
    assert len(versions) == 2
    diff = keel(project, "prompts", "diff", "hi", versions[1], versions[0])
    assert "-" in diff and "Hello" in diff and "Howdy" in diff


def test_prompt_cli_errors(project: Path) -> None:
    _write(project, "Hello")
    assert "no earlier version" in keel(project, "prompts", "rollback", "hi", "production", ok=False)
    assert "no stored version 'abcdef12'" in keel(project, "prompts", "promote", "hi", "staging", "--version", "abcdef12", ok=False)
    assert "Did you mean 'hi'?" in keel(project, "prompts", "show", "hii", ok=False)
    assert "name=value" in keel(project, "prompts", "render", "hi", "--var", "novalue", ok=False)
    (project / "prompts" / "bad.prompt.yaml").write_text("model: fake/x\nmessages: [\n")
    assert "bad.prompt.yaml" in keel(project, "prompts", "render", "bad", ok=False)
