"""Unified diffs between two prompt definitions, their templates, or their rendered messages.

Each function takes a `PromptSpec` or a stored definition (`spec.definition()` output, e.g. from
the store's registry), so `keel check` and `keel prompts diff` can compare what is on disk with
any recorded version. An empty string means "no difference".
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import yaml

from .spec import PromptSpec
from .version import content_hash, short_version

Prompt = PromptSpec | Mapping[str, Any]
KEY_ORDER = ("description", "model", "params", "input", "output", "messages", "tags", "reference_input", "partials")


def diff_text(old: str, new: str, old_label: str = "old", new_label: str = "new", context: int = 3) -> str:
    """A unified diff of two texts (every line ends with a newline)."""
    lines = difflib.unified_diff(_lines(old), _lines(new), old_label, new_label, n=context)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def diff_definitions(old: Prompt, new: Prompt) -> str:
    """What changed in the whole definition (model, params, schemas, templates, partials)."""
    return diff_text(definition_text(old), definition_text(new), label(old), label(new))


def diff_templates(old: Prompt, new: Prompt) -> str:
    """What changed in the message templates and partials only."""
    return diff_text(template_text(old), template_text(new), label(old), label(new))


def diff_rendered(old: PromptSpec, new: PromptSpec, variables: dict[str, Any] | None = None) -> str:
    """What the model would see differently: both rendered with `variables` (default: each one's reference_input)."""
    old_messages = old.render(variables) if variables is not None else old.render_reference()
    new_messages = new.render(variables) if variables is not None else new.render_reference()
    return diff_text(rendered_text(old_messages), rendered_text(new_messages), label(old), label(new))


def label(prompt: Prompt) -> str:
    """`name@shortversion` for a spec, `@shortversion` for a bare definition."""
    if isinstance(prompt, PromptSpec):
        return f"{prompt.name}@{prompt.short_version}"
    return f"@{short_version(content_hash(dict(prompt)))}"


def definition_text(prompt: Prompt) -> str:
    """The normalized definition as readable YAML: fixed key order, multi-line strings as blocks."""
    data = _definition(prompt)
    ordered = {key: data[key] for key in KEY_ORDER if key in data}
    ordered.update({key: data[key] for key in sorted(data) if key not in ordered})
    return yaml.dump(ordered, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)


def template_text(prompt: Prompt) -> str:
    """Each message template, then each partial, under a `## …` heading."""
    data = _definition(prompt)
    sections = [
        (f"## messages[{i}] ({m['role']}{', ' + m['name'] if m.get('name') else ''})", m.get("content", ""))
        for i, m in enumerate(data.get("messages", []))
    ]
    sections += [(f"## partial {name}", text) for name, text in sorted((data.get("partials") or {}).items())]
    return "".join(f"{heading}\n{_ending(text)}" for heading, text in sections)


def rendered_text(messages: list[dict[str, Any]]) -> str:
    """Rendered messages as text, one `## role` section each."""
    return "".join(f"## {m['role']}\n{_ending(str(m.get('content') or ''))}" for m in messages)


def _definition(prompt: Prompt) -> dict[str, Any]:
    return prompt.definition() if isinstance(prompt, PromptSpec) else dict(prompt)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _ending(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so template diffs read line by line."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and value.strip() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)
