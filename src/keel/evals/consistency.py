"""How consistent repeated answers are, and what their pass rates say.

Agreement of N answers to one case is the share that equal the most common one: 1.0 when all
agree, 1/N when all differ. `exact` compares the text as is, `normalized` after case folding and
collapsing whitespace, `json_fields` field by field (the mean over fields of each field's
agreement; a field missing from an answer counts as its own value), when every answer is a JSON
object, and `semantic` by meaning: the mean cosine similarity of the answers' embeddings over all
pairs (1.0 for identical texts; paraphrases score ~0.7–0.95, unrelated answers ~0–0.2).

Semantic agreement needs the `embeddings` extra and costs an embedding per answer, so a run's
summary reports it (`semantic_consistency` per prompt × model cell, next to `consistency`) only
when the suite scored a `similar` assertion, which loads the model and embeds the answers
anyway, and the extra is installed; otherwise it is None. `consistency(texts, embedder)` gives it
for any answers.

pass@k is the chance that at least one of k answers passes and pass^k that all k do, estimated
without bias from n answers of which c passed: 1 - C(n-c, k)/C(n, k) and C(c, k)/C(n, k).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .embeddings import Embedder

_MISSING = "\x00missing"
Z95 = 1.959963984540054


def agreement(values: Sequence[Hashable]) -> float:
    """Share of values equal to the most common one (1.0 for one value or none)."""
    if len(values) <= 1:
        return 1.0
    return Counter(values).most_common(1)[0][1] / len(values)


def normalize(text: str) -> str:
    return " ".join(text.casefold().split())


def json_field_agreement(texts: Sequence[str]) -> float | None:
    """Mean per-field agreement when every text is a JSON object; None otherwise."""
    objects = []
    for text in texts:
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        objects.append(value)
    fields = sorted({key for obj in objects for key in obj})
    if not fields:
        return 1.0
    per_field = [agreement([_canonical(obj.get(key, _MISSING)) for obj in objects]) for key in fields]
    return sum(per_field) / len(per_field)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def semantic_agreement(texts: Sequence[str], embedder: Embedder) -> float:
    """Mean cosine similarity of the answers' embeddings over all pairs (1.0 for one answer)."""
    if len(texts) <= 1:
        return 1.0
    vectors = embedder.encode(list(texts))
    similarities = vectors @ vectors.T
    n = len(texts)
    return float((similarities.sum() - similarities.trace()) / (n * (n - 1)))


def consistency(texts: Sequence[str], embedder: Embedder | None = None) -> dict[str, float | None]:
    """Every agreement measure for the answers to one case (`semantic` only with an embedder)."""
    return {
        "exact": agreement(list(texts)),
        "normalized": agreement([normalize(t) for t in texts]),
        "json_fields": json_field_agreement(texts),
        "semantic": semantic_agreement(texts, embedder) if embedder is not None else None,
    }


def uses_similar(results: Sequence[dict[str, Any]]) -> bool:
    """Whether any stored result scored a `similar` assertion."""
    return any(outcome.get("type") == "similar" for row in results for outcome in row.get("assertions") or [])


def semantic_consistency(groups: Sequence[Sequence[str]]) -> float | None:
    """Mean semantic agreement over cases (each group: the answers to one case), or None when the
    embeddings extra is not installed."""
    from . import embeddings

    if not groups or embeddings.missing():
        return None
    embedder = embeddings.default_embedder()
    embedder.encode([text for texts in groups for text in texts])  # one batched pass; then cached
    return sum(semantic_agreement(texts, embedder) for texts in groups) / len(groups)


def case_consistency(texts: Sequence[str]) -> float:
    """The one figure per case: field agreement for JSON answers, else normalized agreement."""
    measures = consistency(texts)
    json_fields = measures["json_fields"]
    return json_fields if json_fields is not None else float(measures["normalized"] or 0.0)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chance that at least one of k answers (drawn from n, c of them passing) passes."""
    if not 0 < k <= n:
        raise ValueError(f"k must be in 1..{n}, not {k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Chance that all of k answers (drawn from n, c of them passing) pass."""
    if not 0 < k <= n:
        raise ValueError(f"k must be in 1..{n}, not {k}")
    return math.comb(c, k) / math.comb(n, k)


def wilson_interval(passed: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (95% by default) for a pass rate of passed/total."""
    if total == 0:
        return 0.0, 1.0
    p = passed / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - margin), min(1.0, centre + margin)
