"""Content-hash versions: sha256 of the canonical JSON of a normalized prompt definition.

The definition is hashed after parsing, so comments, key order, quoting style and other
formatting-only YAML differences do not change the version; the text of every partial a prompt
includes is part of the definition, so editing a partial changes the version of each prompt that
uses it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SHORT_LENGTH = 12


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, finite numbers only: equal data gives equal bytes."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def content_hash(definition: Any) -> str:
    """The full version: sha256 hex of `canonical_json(definition)`."""
    return hashlib.sha256(canonical_json(definition)).hexdigest()


def short_version(version: str) -> str:
    """The 12-character form shown to people (like a short git commit id)."""
    return version[:SHORT_LENGTH]
