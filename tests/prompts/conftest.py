"""Prompt folders built from real files in a temporary directory."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

SUMMARIZE = """\
description: Summarize a text in N bullet points
model: local                 # a model alias from keel.toml, or "provider/model-id"
params: {temperature: 0, max_tokens: 200, seed: 7, stop: ["\\n\\n"]}
input:                       # typed variables: JSON Schema per variable, or a short type name
  text: string
  bullets: {type: integer, minimum: 1, maximum: 10, default: 3}
output:                      # optional JSON Schema of the answer
  type: object
  properties: {bullets: {type: array, items: {type: string}}}
  required: [bullets]
messages:
  - role: system
    content: "{% include 'tone.j2' %}"     # partials from prompts/partials/
  - role: user
    content: |
      Summarize in {{ bullets }} bullets:
      {{ text }}
tags: [summaries]
reference_input: {text: "Keel pins prompts and models.", bullets: 2}   # used for lockfile token counts
"""

Write = Callable[..., Path]


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    """`prompts/` with `summarize.prompt.yaml` and `partials/tone.j2`."""
    folder = tmp_path / "prompts"
    (folder / "partials").mkdir(parents=True)
    (folder / "partials" / "tone.j2").write_text("Be brief and neutral.")
    (folder / "summarize.prompt.yaml").write_text(SUMMARIZE)
    return folder


@pytest.fixture
def write(prompts_dir: Path) -> Write:
    """write(name, yaml_text) → the path of prompts/NAME.prompt.yaml (text is dedented)."""

    def write_prompt(name: str, text: str) -> Path:
        path = prompts_dir / f"{name}.prompt.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return write_prompt
