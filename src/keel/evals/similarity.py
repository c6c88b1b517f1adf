"""`similar`: the answer means what the reference says, by the cosine similarity of embeddings.

The embeddings are all-MiniLM-L6-v2's, computed offline in this process (embeddings.py): an
optional extra. Without it a suite using `similar` is refused before any call, with the commands
that install it; a model file that is not the published one is refused the same way. A reference
that is not a string (a JSON value from the case's `expected`) is compared as JSON. Texts are
read up to 256 tokens (~200 words), as sentence-transformers does.
As a guide: paraphrases score ~0.7–1.0, sentences on one topic ~0.4–0.7, unrelated ones ~0–0.2.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from pydantic import Field

from ..errors import ConfigError
from . import embeddings
from ._base import Assertion, Environment, Observation, Outcome, expected

INSTALL_HINT = embeddings.INSTALL_HINT


class Similar(Assertion):
    """Cosine similarity of the answer's and the value's embeddings is at least `threshold`."""

    type: Literal["similar"]
    value: Any = None
    threshold: float = Field(default=0.8, ge=-1, le=1)
    embedding_model: Literal["sentence-transformers/all-MiniLM-L6-v2"] = embeddings.MODEL_NAME

    def check_ready(self) -> None:
        """Refuse a missing extra or a model file that fails its hash check, before any call."""
        absent = embeddings.missing()
        if absent:
            raise ConfigError(INSTALL_HINT, extra="embeddings", missing=absent)
        embeddings.default_embedder()

    async def evaluate(self, observation: Observation, env: Environment) -> Outcome:
        reference = expected(self.value, observation)
        if not isinstance(reference, str):
            reference = json.dumps(reference, ensure_ascii=False)
        model = await asyncio.to_thread(embeddings.default_embedder)
        vectors = await asyncio.to_thread(model.encode, [observation.text, reference])
        score = float(vectors[0] @ vectors[1])
        passed = score >= self.threshold
        message = "" if passed else f"similarity {score:.2f} < {self.threshold}"
        return Outcome(passed, message, max(0.0, min(1.0, score)), {"similarity": round(score, 4)})
