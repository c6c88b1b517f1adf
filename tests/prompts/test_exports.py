"""The public surface of keel.prompts is pinned, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import keel.prompts

EXPECTED = {
    "LOCKFILE_NAME", "LockEntry", "Lockfile", "ModelIdentity", "PROMPT_SUFFIX", "PromptLibrary", "PromptMessage",
    "PromptSpec", "Drift", "canonical_json", "compare", "compare_all", "content_hash", "diff_definitions",
    "diff_rendered", "diff_templates", "diff_text", "editing", "update",
}


def test_exported_members_are_pinned() -> None:
    exported = {name for name in dir(keel.prompts) if not name.startswith("_")}
    modules = {name for name in exported if type(getattr(keel.prompts, name)).__name__ == "module"}
    assert exported - modules == EXPECTED


def test_import_does_not_load_jsonschema() -> None:
    code = "import sys, keel.prompts; print('jsonschema' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "False"
