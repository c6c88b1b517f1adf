"""The `keel` command as a person runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from testenv import run_keel

keel = run_keel


def test_init_writes_a_valid_commented_file_and_refuses_to_overwrite(project: Path) -> None:
    keel(project, "init")
    text = (project / "keel.toml").read_text()
    assert text.startswith("# keel.toml")
    failed = keel(project, "init", ok=False)
    assert "already exists" in failed.stderr and "--force" in failed.stderr
    keel(project, "init", "--force")
    assert keel(project, "run", "hi", "-m", "fake/x").stdout.strip() == "Echo: hi"


def test_run_then_traces_list_and_show(project: Path) -> None:
    assert keel(project, "run", "hello there", "-m", "fake/x").stdout.strip() == "Echo: hello there"
    assert keel(project, "run", "streamed words", "-m", "fake/x", "--stream").stdout.strip() == "Echo: streamed words"
    rows = [json.loads(line) for line in keel(project, "traces", "list", "--json").stdout.splitlines()]
    assert [r["stream"] for r in rows] == [True, False]
    assert all(r["status"] == "ok" and r["completion_tokens"] for r in rows)
    table = keel(project, "traces", "list").stdout
    assert "fake/x" in table and "ok" in table
    shown = json.loads(keel(project, "traces", "show", rows[1]["id"][:10], "--json").stdout)
    assert shown["response"]["message"]["content"] == "Echo: hello there"
    assert "Echo: hello there" in keel(project, "traces", "show", rows[1]["id"]).stdout


def test_traces_filters_and_errors(project: Path) -> None:
    keel(project, "run", "x", "-m", "fake/x")
    assert keel(project, "traces", "list", "--json", "--model", "nope").stdout == ""
    assert keel(project, "traces", "list", "--json", "--since", "1h").stdout.strip()
    assert keel(project, "traces", "list", "--json", "--status", "error").stdout == ""
    assert "neither an age" in keel(project, "traces", "list", "--since", "10X", ok=False).stderr
    assert "No trace with id" in keel(project, "traces", "show", "ffff0000", ok=False).stderr


def test_run_with_json_schema_file(project: Path) -> None:
    schema = project / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}))
    assert json.loads(keel(project, "run", "x", "-m", "fake/x", "--json-schema", str(schema)).stdout) == {"ok": False}
    schema.write_text("{broken")
    assert "not valid JSON" in keel(project, "run", "x", "-m", "fake/x", "--json-schema", str(schema), ok=False).stderr
    assert "file not found" in keel(project, "run", "x", "--json-schema", "missing.json", ok=False).stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("run", "x", "-m", "nonexistent"), "Unknown model 'nonexistent'"),
        (("run", "x", "-m", "fake/x", "--temperature", "5"), "temperature"),
        (("serve", "--host", "0.0.0.0"), "Refusing to bind 0.0.0.0 without gateway keys"),
        (("serve", "--model", "missing.gguf"), "no such GGUF file"),
    ],
)
def test_bad_input_is_a_clear_error(project: Path, args: tuple[str, ...], fragment: str) -> None:
    assert fragment in keel(project, *args, ok=False).stderr


def test_invalid_config_names_file_and_key(project: Path) -> None:
    (project / "keel.toml").write_text("[gateway]\nhost = 1\nbogus = true\n")
    stderr = keel(project, "run", "x", ok=False).stderr
    assert "keel.toml" in stderr and "gateway.bogus" in stderr and "gateway.host" in stderr


def test_missing_api_key_names_the_variable(project: Path) -> None:
    (project / "keel.toml").write_text('[providers.up]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "KEEL_TEST_UNSET_KEY"\n')
    assert "KEEL_TEST_UNSET_KEY" in keel(project, "run", "x", "-m", "up/gpt", ok=False).stderr


def test_since_dates_are_utc_unless_they_name_a_zone() -> None:
    from datetime import datetime, timezone

    from keel.cli.traces import parse_since

    assert parse_since("2026-11-25") == datetime(2026, 11, 25, tzinfo=timezone.utc).timestamp()
    assert parse_since("2026-11-25T10:00+02:00") == datetime(2026, 11, 25, 8, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("args, message", [(["nope"], "No such command 'nope'"), (["cost", "report", "--bogus"], "No such option: --bogus")])
def test_usage_mistakes_are_usage_errors_not_internal_errors(project: Path, args: list[str], message: str) -> None:
    result = run_keel(project, *args, ok=False)
    assert result.returncode == 2 and message in result.stderr and "internal error" not in result.stderr


def test_a_command_imports_only_its_own_module(project: Path) -> None:
    code = "import sys; from keel.cli import main\ntry: main(['cost', 'report'])\nexcept SystemExit: pass\nprint(sorted(m for m in sys.modules if m.startswith('keel.cli.') or m == 'keel.evals'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "['keel.cli.cost', 'keel.cli.cost_project', 'keel.cli.cost_quality', 'keel.cli.traces']"
