"""Credentials out of recordings: every string of a recording goes through `Scrubber.scrub`.

Removed: the values of the provider's API-key variable (`api_key_env`) and of its configured
headers, any other secret handed in, and text that looks like a key wherever it appears
(request, answer, error): `sk-…` keys (OpenAI, Anthropic, most OpenAI-compatible hosts), bearer
tokens, Google `AIza…` keys and AWS access key ids. Headers themselves are never recorded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from ..settings import ProviderSettings

REDACTED = "[REDACTED]"
#: Shorter literal secrets are not replaced: they would match ordinary text.
MIN_SECRET = 8
_PATTERNS = [
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1" + REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),
]


class Scrubber:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)

    @classmethod
    def for_provider(cls, settings: ProviderSettings, extra: Iterable[str] = ()) -> "Scrubber":
        """Secrets of this provider: its API key (read from `api_key_env` now) and header values."""
        key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        return cls([key, *settings.headers.values(), *extra])

    def scrub(self, value: Any) -> Any:
        """`value` (JSON-like data) with every secret in its strings replaced, keys included."""
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, dict):
            return {self._text(str(k)): self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(item) for item in value]
        return value

    def _text(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text
