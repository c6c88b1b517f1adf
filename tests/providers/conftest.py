"""The one loaded local model shared by every test in the session (the engine is process-wide)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from keel.providers.local import LocalProvider
from keel.settings import ProviderSettings




@pytest.fixture
def unloaded() -> LocalProvider:
    """A provider that has loaded nothing yet (for errors raised before any model is loaded)."""
    return LocalProvider("local", ProviderSettings(type="local"))


@pytest.fixture
def make_gguf(tmp_path: Path) -> Callable[..., Path]:
    """Writes a GGUF v3 header (no tensors) with a vocabulary, scores and optionally a chat template."""

    def text(value: str) -> bytes:
        return struct.pack("<Q", len(value.encode())) + value.encode()

    def make(name: str, architecture: str, template: str | None = None) -> Path:
        items = [  # (key, GGUF value type, encoded value)
            ("general.architecture", 8, text(architecture)),
            ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + text("<s>") + text("a") + text("b")),
            ("tokenizer.ggml.scores", 9, struct.pack("<IQ3f", 6, 3, 0.0, -1.0, -2.0)),
            (f"{architecture}.block_count", 4, struct.pack("<I", 18)),
        ]
        if template is not None:
            items.append(("tokenizer.chat_template", 8, text(template)))
        header = b"GGUF" + struct.pack("<IQQ", 3, 0, len(items))
        header += b"".join(text(key) + struct.pack("<I", kind) + value for key, kind, value in items)
        path = tmp_path / name
        path.write_bytes(header)
        return path

    return make
