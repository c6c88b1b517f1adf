"""keel.lock: stable text, round trips, precise errors, atomic and concurrent writes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from keel.errors import PromptError
from keel.prompts import LockEntry, Lockfile, ModelIdentity, editing, update
from keel.prompts.lockfile import sidecar

V1, V2 = "a" * 64, "b" * 64
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def entry(version: str = V1, **changes: object) -> LockEntry:
    data: dict = {
        "version": version,
        "model": ModelIdentity(alias="local", provider="local", model="default"),
        "params": {"temperature": 0, "max_tokens": 200},
        "reference_tokens": 41,
        "locked_at": WHEN,
    }
    return LockEntry(**{**data, **changes})


EXPECTED = f"""\
# keel.lock: pinned prompt versions and model identities. Commit this file.
lockfile: 1
prompts:
  classify:
    version: {V2}
    model:
      alias: fast
      provider: openai
      model: gpt-4o-mini
      snapshot: gpt-4o-mini-2024-07-18
      fingerprint: fp_44709d6fcb
    params: {{}}
    reference_tokens: null
    baseline_run: run_123
    locked_at: '2025-01-02T03:04:05+00:00'
  summarize:
    version: {V1}
    model:
      alias: local
      provider: local
      model: default
      snapshot: null
      fingerprint: null
    params:
      max_tokens: 200
      temperature: 0
    reference_tokens: 41
    baseline_run: null
    locked_at: '2025-01-02T03:04:05+00:00'
"""


def sample() -> Lockfile:
    lock = Lockfile()
    lock.set("summarize", entry())
    identity = ModelIdentity(alias="fast", provider="openai", model="gpt-4o-mini", snapshot="gpt-4o-mini-2024-07-18", fingerprint="fp_44709d6fcb")
    lock.set("classify", entry(V2, model=identity, params={}, reference_tokens=None, baseline_run="run_123"))
    return lock


def test_text_is_sorted_with_a_fixed_key_order(tmp_path: Path) -> None:
    path = tmp_path / "keel.lock"
    sample().write(path)
    assert path.read_text() == EXPECTED


def test_round_trip_and_stable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "keel.lock"
    sample().write(path)
    first = path.read_bytes()
    again = Lockfile.read(path)
    assert again == sample()
    again.write(path)
    assert path.read_bytes() == first
    reversed_order = Lockfile({name: sample().entries[name] for name in reversed(sorted(sample().entries))})
    assert reversed_order.dumps().encode() == first


def test_missing_file_is_an_empty_lock(tmp_path: Path) -> None:
    assert Lockfile.read(tmp_path / "keel.lock").entries == {}


def test_set_get_and_remove() -> None:
    lock = sample()
    assert lock.get("summarize") == entry()
    assert lock.remove("summarize") is True
    assert lock.remove("summarize") is False
    assert list(lock.entries) == ["classify"]


def test_locked_at_defaults_to_now_in_utc() -> None:
    stamp = LockEntry(version=V1, model=ModelIdentity(alias="a", provider="p", model="m")).locked_at
    assert stamp.tzinfo is not None and abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 5


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("lockfile: 1\nprompts:\n  a: [\n", 4, 1, "invalid YAML"),
        ("lockfile: 1\nprompts:\n  a:\n    version: nothex\n", 4, 5, "prompts.a.version"),
        (EXPECTED.replace("reference_tokens: 41", "reference_tokens: many"), 27, 5, "prompts.summarize.reference_tokens"),
        (EXPECTED.replace("    baseline_run: run_123\n", "    baseline: run_123\n"), 14, 5, "unknown key 'baseline'"),
        (EXPECTED.replace("      model: default\n", ""), 18, 5, "missing required key 'model' in prompts.summarize.model"),
        ("lockfile: 1\nextra: true\n", 2, 1, "unknown key 'extra' in the lockfile"),
        ("lockfile: 1\nprompts:\n  a: &e {version: x}\n  b: *e\n", 3, 6, "aliases are not supported"),
    ],
)
def test_malformed_lockfile_names_file_and_line(tmp_path: Path, text: str, line: int, column: int, words: str) -> None:
    path = tmp_path / "keel.lock"
    path.write_text(text)
    with pytest.raises(PromptError) as info:
        Lockfile.read(path)
    assert (info.value.file, info.value.line, info.value.column) == (str(path), line, column)
    assert str(info.value).startswith(f"{path}:{line}:{column}: ")
    assert words in str(info.value)


def test_unsupported_format_version(tmp_path: Path) -> None:
    path = tmp_path / "keel.lock"
    path.write_text("lockfile: 99\nprompts: {}\n")
    with pytest.raises(PromptError, match="format 99 is not supported"):
        Lockfile.read(path)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "keel.lock"
    path.write_text("old")
    path.chmod(0o664)
    sample().write(path)
    assert path.read_text() == EXPECTED
    assert path.stat().st_mode & 0o777 == 0o664
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keel.lock"]


def test_update_and_editing(tmp_path: Path) -> None:
    path = tmp_path / "keel.lock"
    written = update(path, lambda lock: lock.set("summarize", entry()))
    assert Lockfile.read(path) == written
    with editing(path) as lock:
        lock.set("other", entry(V2))
    assert sorted(Lockfile.read(path).entries) == ["other", "summarize"]
    assert sidecar(path).name == "keel.lock.lock"


def test_a_failed_edit_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keel.lock"
    sample().write(path)
    with pytest.raises(RuntimeError), editing(path) as lock:
        lock.remove("summarize")
        raise RuntimeError("boom")
    assert path.read_text() == EXPECTED


WRITER = textwrap.dedent("""\
    import sys
    from datetime import datetime, timezone
    from keel.prompts import LockEntry, ModelIdentity, update

    path, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = ModelIdentity(alias="local", provider="local", model="default")
    for i in range(count):
        entry = LockEntry(version=f"{i:064x}", model=model, params={"worker": worker}, locked_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
        update(path, lambda lock: lock.set(f"{worker}-{i}", entry))
""")


def test_concurrent_writers_never_lose_entries_or_corrupt_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keel.lock"
    workers, count = 5, 10
    processes = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{n}", str(count)], stderr=subprocess.PIPE)
        for n in range(workers)
    ]
    reads = 0
    while any(p.poll() is None for p in processes):
        if path.exists():
            Lockfile.read(path)  # never sees a half-written file
            reads += 1
        time.sleep(0.01)
    for process in processes:
        assert process.wait() == 0, process.stderr.read().decode() if process.stderr else ""
        if process.stderr:
            process.stderr.close()
    names = set(Lockfile.read(path).entries)
    assert names == {f"w{n}-{i}" for n in range(workers) for i in range(count)}
    assert reads > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keel.lock", "keel.lock.lock"]
