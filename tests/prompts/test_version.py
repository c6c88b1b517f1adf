"""Versions hash the meaning of a definition, not its formatting."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.prompts import PromptSpec, canonical_json, content_hash

from .conftest import Write

BASE = """\
model: local
params: {temperature: 0, max_tokens: 200}
input:
  text: string
messages:
  - role: user
    content: "Summarize: {{ text }}"
"""

REFORMATTED = """\
# The same prompt, written differently.
messages:
- content: 'Summarize: {{ text }}'   # single quotes, comment
  role: "user"
input: {text: {type: string}}        # long form of the short type name
params:
  max_tokens: 200
  temperature: 0
model: 'local'
description: ''                      # a default value is the same as leaving it out
tags: []
"""


def version(write: Write, text: str, name: str = "p") -> str:
    return PromptSpec.load(write(name, text)).version


def test_version_is_sha256_hex_with_a_12_character_short_form(write: Write) -> None:
    spec = PromptSpec.load(write("p", BASE))
    assert len(spec.version) == 64 and int(spec.version, 16) >= 0
    assert spec.short_version == spec.version[:12]
    assert spec.version == content_hash(spec.definition())


def test_formatting_comments_key_order_and_quoting_keep_the_version(write: Write) -> None:
    assert version(write, BASE) == version(write, REFORMATTED, "q")


def test_the_file_name_and_name_key_do_not_enter_the_version(write: Write) -> None:
    assert version(write, BASE, "one") == version(write, "name: two\n" + BASE, "two")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Summarize: {{ text }}", "Summarise: {{ text }}"),
        ("temperature: 0", "temperature: 0.5"),
        ("model: local", "model: openai/gpt-4o"),
        ("text: string", "text: {type: string, maxLength: 10}"),
        ("role: user", "role: system"),
    ],
)
def test_a_meaningful_change_moves_the_version(write: Write, old: str, new: str) -> None:
    assert old in BASE
    assert version(write, BASE) != version(write, BASE.replace(old, new), "q")


def test_editing_a_partial_moves_the_version_of_every_prompt_that_includes_it(write: Write, prompts_dir: Path) -> None:
    uses = "model: local\nmessages: [{role: system, content: \"{% include 'tone.j2' %}\"}]\n"
    before = {name: version(write, uses, name) for name in ("a", "b")}
    unrelated = version(write, BASE, "c")
    (prompts_dir / "partials" / "tone.j2").write_text("Be warm.")
    after = {name: PromptSpec.load(prompts_dir / f"{name}.prompt.yaml").version for name in ("a", "b")}
    assert all(before[name] != after[name] for name in before)
    assert PromptSpec.load(prompts_dir / "c.prompt.yaml").version == unrelated


def test_nested_partials_are_inlined(write: Write, prompts_dir: Path) -> None:
    (prompts_dir / "partials" / "outer.j2").write_text("{% include 'inner.j2' %}!")
    (prompts_dir / "partials" / "inner.j2").write_text("inner")
    spec = PromptSpec.load(write("n", "model: local\nmessages: [{role: user, content: \"{% include 'outer.j2' %}\"}]\n"))
    assert spec.definition()["partials"] == {"inner.j2": "inner", "outer.j2": "{% include 'inner.j2' %}!"}
    assert spec.render()[0]["content"] == "inner!"
    first = spec.version
    (prompts_dir / "partials" / "inner.j2").write_text("changed")
    assert PromptSpec.load(prompts_dir / "n.prompt.yaml").version != first


def test_canonical_json_is_sorted_and_compact() -> None:
    assert canonical_json({"b": [1, {"d": 1, "c": "é"}], "a": None}) == '{"a":null,"b":[1,{"c":"é","d":1}]}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
