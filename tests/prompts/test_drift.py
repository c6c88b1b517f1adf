"""Drift between the prompts on disk, the models they resolve to, and keel.lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import UnknownModel
from keel.prompts import LockEntry, Lockfile, ModelIdentity, PromptLibrary, PromptSpec, compare, compare_all

from .conftest import Write

LOCAL = ModelIdentity(alias="local", provider="local", model="default", fingerprint="gguf-1")


@pytest.fixture
def summarize(prompts_dir: Path) -> PromptSpec:
    return PromptSpec.load(prompts_dir / "summarize.prompt.yaml")


def locked(spec: PromptSpec, **changes: object) -> LockEntry:
    return LockEntry(**{"version": spec.version, "model": LOCAL, "params": spec.params, **changes})


def test_no_drift_when_everything_matches(summarize: PromptSpec) -> None:
    assert compare(summarize, locked(summarize)) == []
    assert compare(summarize, locked(summarize), LOCAL) == []


def test_prompt_changed_carries_old_and_new_versions(summarize: PromptSpec) -> None:
    old = "0" * 64
    [drift] = compare(summarize, locked(summarize, version=old))
    assert (drift.name, drift.kind, drift.old, drift.new) == ("summarize", "prompt_changed", old, summarize.version)
    assert f"000000000000 → {summarize.short_version}" in drift.message


def test_alias_resolving_to_another_model(summarize: PromptSpec) -> None:
    now = ModelIdentity(alias="local", provider="local", model="qwen3-1.7b", fingerprint="gguf-1")
    [drift] = compare(summarize, locked(summarize), now)
    assert (drift.kind, drift.old, drift.new) == ("model_changed", LOCAL, now)
    assert "(model)" in drift.message and "local/default" in drift.message and "local/qwen3-1.7b" in drift.message


def test_fingerprint_change_and_unknown_fingerprint(summarize: PromptSpec) -> None:
    [drift] = compare(summarize, locked(summarize), LOCAL.model_copy(update={"fingerprint": "gguf-2"}))
    assert drift.kind == "model_changed" and "fingerprint" in drift.message
    assert compare(summarize, locked(summarize), LOCAL.model_copy(update={"fingerprint": None})) == []


def test_alias_edited_in_the_prompt_without_a_resolver(summarize: PromptSpec) -> None:
    entry = locked(summarize, model=LOCAL.model_copy(update={"alias": "fast"}))
    [drift] = compare(summarize, entry)
    assert drift.kind == "model_changed" and drift.new == "local"


def test_params_changed(summarize: PromptSpec) -> None:
    [drift] = compare(summarize, locked(summarize, params={"temperature": 1}))
    assert (drift.kind, drift.old, drift.new) == ("params_changed", {"temperature": 1}, summarize.params)
    effective = {**summarize.params, "top_p": 0.9}
    assert [d.kind for d in compare(summarize, locked(summarize), params=effective)] == ["params_changed"]


def test_compare_all_reports_every_kind_sorted_by_name(prompts_dir: Path, write: Write, summarize: PromptSpec) -> None:
    write("fresh", "model: local\nmessages: [{role: user, content: hi}]\n")
    write("broken", "model: local\nmessages: [\n")
    lock = Lockfile({
        "summarize": locked(summarize, version="1" * 64),
        "deleted": locked(summarize),
    })
    drifts = compare_all(PromptLibrary(prompts_dir), lock)
    assert [(d.name, d.kind) for d in drifts] == [
        ("broken", "invalid"),
        ("deleted", "not_on_disk"),
        ("fresh", "not_locked"),
        ("summarize", "prompt_changed"),
    ]
    assert "invalid YAML" in drifts[0].message


def test_compare_all_with_a_resolver(prompts_dir: Path, summarize: PromptSpec) -> None:
    lock = Lockfile({"summarize": locked(summarize)})
    library = PromptLibrary(prompts_dir)
    assert compare_all(library, lock, lambda alias: LOCAL) == []
    moved = LOCAL.model_copy(update={"provider": "openai", "model": "gpt-4o"})
    assert [d.kind for d in compare_all(library, lock, lambda alias: moved)] == ["model_changed"]

    def gone(alias: str) -> ModelIdentity:
        raise UnknownModel(alias, ["fast"])

    [drift] = compare_all(library, lock, gone)
    assert drift.kind == "model_changed" and "no longer resolves" in drift.message
