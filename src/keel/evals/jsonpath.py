"""A tiny JSON path reader: `$`, `.key`, `["key"]` / `['key']` and `[index]` steps, nothing else."""

from __future__ import annotations

import re
from typing import Any

_STEP = re.compile(r"""\.([A-Za-z_][\w-]*)|\[(-?\d+)\]|\[(?:"([^"]*)"|'([^']*)')\]""")


def parse_path(path: str) -> list[str | int]:
    """The steps of `path`; ValueError naming where it stops making sense."""
    if not path.startswith("$"):
        raise ValueError(f"a JSON path starts with $ (e.g. $.items[0].name), not {path!r}")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            raise ValueError(f"cannot read JSON path {path!r} at character {position + 1}: use .key, [0] or [\"key\"]")
        key, index, double, single = match.groups()
        steps.append(int(index) if index is not None else (key if key is not None else (double if double is not None else single)))
        position = match.end()
    return steps


def read_path(document: Any, path: str) -> tuple[bool, Any]:
    """(True, value) at `path` in `document`, or (False, None) when it is not there."""
    value = document
    for step in parse_path(path):
        if isinstance(step, int) and isinstance(value, list) and -len(value) <= step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return False, None
    return True, value
