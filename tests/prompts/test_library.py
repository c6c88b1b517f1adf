"""PromptLibrary: listing, lookup with suggestions, and reloading edited files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keel.errors import PromptError, PromptNotFound
from keel.prompts import PromptLibrary

from .conftest import Write

SIMPLE = "model: local\nmessages: [{role: user, content: \"{text}\"}]\n"


def simple(text: str) -> str:
    return SIMPLE.replace("{text}", text)


def test_names_are_sorted_file_stems(prompts_dir: Path, write: Write) -> None:
    write("classify", simple("c"))
    (prompts_dir / "notes.yaml").write_text("not a prompt")
    (prompts_dir / "partials" / "x.prompt.yaml").write_text(simple("partials are not prompts"))
    library = PromptLibrary(prompts_dir)
    assert library.names() == ["classify", "summarize"]
    assert "classify" in library and "notes" not in library
    assert [spec.name for spec in library] == ["classify", "summarize"]


def test_get_returns_the_spec_and_caches_it(prompts_dir: Path) -> None:
    library = PromptLibrary(prompts_dir)
    first = library.get("summarize")
    assert first.name == "summarize"
    assert library.get("summarize") is first


def test_unknown_prompt_suggests_close_names_and_says_where_it_looked(prompts_dir: Path) -> None:
    with pytest.raises(PromptNotFound) as info:
        PromptLibrary(prompts_dir).get("sumarize")
    error = info.value
    assert error.suggestions == ["summarize"]
    assert str(error) == (
        f"No prompt named 'sumarize': looked for sumarize.prompt.yaml in {prompts_dir}/. Did you mean 'summarize'?"
    )


def test_unknown_prompt_in_a_missing_folder(tmp_path: Path) -> None:
    library = PromptLibrary(tmp_path / "nope")
    assert library.names() == []
    with pytest.raises(PromptNotFound, match="the folder does not exist"):
        library.get("x")


def test_names_with_path_separators_are_not_found(prompts_dir: Path) -> None:
    with pytest.raises(PromptNotFound):
        PromptLibrary(prompts_dir).get("partials/tone")


def test_an_edited_file_is_reloaded(prompts_dir: Path, write: Write) -> None:
    path = write("greet", simple("Hello"))
    library = PromptLibrary(prompts_dir)
    before = library.get("greet")
    path.write_text(simple("Hello there"))
    after = library.get("greet")
    assert after.render()[0]["content"] == "Hello there"
    assert after.version != before.version


def test_an_edit_with_the_same_size_is_seen_through_the_mtime(prompts_dir: Path, write: Write) -> None:
    path = write("greet", simple("Hello"))
    library = PromptLibrary(prompts_dir)
    library.get("greet")
    path.write_text(simple("Howdy"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert library.get("greet").render()[0]["content"] == "Howdy"


def test_an_edited_partial_reloads_the_prompts_that_use_it(prompts_dir: Path) -> None:
    library = PromptLibrary(prompts_dir)
    before = library.get("summarize")
    (prompts_dir / "partials" / "tone.j2").write_text("Be warm and detailed, please.")
    after = library.get("summarize")
    assert after.version != before.version
    assert after.render({"text": "t"})[0]["content"] == "Be warm and detailed, please."


def test_a_deleted_file_is_not_found_and_a_broken_edit_raises(prompts_dir: Path, write: Write) -> None:
    path = write("greet", simple("Hello"))
    library = PromptLibrary(prompts_dir)
    library.get("greet")
    path.write_text("model: local\nmessages: [\n")
    with pytest.raises(PromptError, match="invalid YAML"):
        library.get("greet")
    path.unlink()
    with pytest.raises(PromptNotFound):
        library.get("greet")


def test_a_custom_partials_folder(tmp_path: Path, write: Write, prompts_dir: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "tone.j2").write_text("Shared tone.")
    library = PromptLibrary(prompts_dir, partials_dir=shared)
    assert library.get("summarize").render({"text": "t"})[0]["content"] == "Shared tone."
