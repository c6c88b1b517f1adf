"""Semantic similarity between the answer and a reference, through an embedding model.

An optional extra: it needs `sentence-transformers` (and downloads its model on first use).
Without it, a suite using `similar` is refused before any call, saying what to install.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field

from ..errors import ConfigError
from ._base import Assertion, Environment, Observation, Outcome, expected

INSTALL_HINT = (
    "The `similar` assertion needs an embedding backend, and none is installed: "
    "run `pip install sentence-transformers` (in Keel's environment), "
    "or replace `similar` with `llm-judge` or `contains`."
)


class Similar(Assertion):
    """Cosine similarity of the answer's and the value's embeddings is at least `threshold`."""

    type: Literal["similar"]
    value: Any = None
    threshold: float = Field(default=0.8, ge=-1, le=1)
    embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2"

    def check_ready(self) -> None:
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigError(INSTALL_HINT, extra="sentence-transformers")

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        self.check_ready()
        model = _encoder(self.embedding_model)
        vectors = model.encode([observation.text, str(expected(self.value, observation))], normalize_embeddings=True)
        score = float((vectors[0] * vectors[1]).sum())
        passed = score >= self.threshold
        return Outcome(passed, "" if passed else f"similarity {score:.2f} < {self.threshold}", max(0.0, score))


@lru_cache(maxsize=2)
def _encoder(name: str) -> Any:  # pragma: no cover - needs the optional extra
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name)
