"""The prompt's byte bound: an upper bound of real tokenizers' counts, and reserved first.

The budget stage prices a call's worst case from `prompt_bound` (UTF-8 bytes + template
allowances) and counts with the tokenizer only when that does not fit, so a call whose exact
worst case fits is never refused for the bound's slack. The OpenAI model here is served by a real
HTTP upstream on 127.0.0.1 (tests/upstreams), priced in keel.toml at 1 and 2 per million tokens.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from upstreams import Fault, OpenAIUpstream

from keel.budgets import BudgetStage, Ledger, budget_status, with_budgets
from keel.budgets.worst_case import MESSAGE_TOKENS, NON_TEXT_TOKENS, REQUEST_TOKENS, TOOLS_TOKENS, Priced, output_tokens, prompt_bound, prompt_tokens
from keel.client import AsyncClient
from keel.errors import BudgetExceeded
from keel.pipeline import ProviderStage
from keel.routing import build_routing
from keel.settings import load_settings
from keel.tokenizers import openai_encoding
from keel.types import ChatRequest

from .conftest import LedgerFactory

D = Decimal
MILLIONTH = D("0.000001")
GPT = Priced("g", "up", "openai", "openai", "gpt-4o-mini")
OTHER = Priced("c", "claude", "anthropic", "anthropic", "claude-sonnet-4")

#: Texts that stress a tokenizer: digits and CJK split finely, emoji are 4 bytes, special-token text.
TEXTS = [
    "",
    "a",
    "one two three",
    "1 2 3 4 5 6 7 8 9 0 " * 20,
    "日本語のテキスト🙂" * 20,
    "<|im_start|><|im_end|><|endoftext|>" * 5,
    "\n \t" * 50,
    "ab" * 500,
]


def request_of(*messages: dict[str, Any], **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate({"messages": list(messages), **fields})


def test_the_bound_is_bytes_plus_the_template_allowances() -> None:
    request = request_of({"role": "system", "content": "Be brief."}, {"role": "user", "content": "héllo wörld"},
                         max_tokens=50, n=3)
    # bytes: system 6 + 9, user 4 + 13 (é and ö are 2 bytes each)
    assert prompt_bound(request) == 6 + 9 + 4 + 13 + 2 * MESSAGE_TOKENS + REQUEST_TOKENS
    assert prompt_tokens(request, OTHER) == prompt_bound(request)  # no offline tokenizer: the bound
    with_image = request_of({"role": "user", "content": [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]})
    assert prompt_bound(with_image) == 4 + 12 + MESSAGE_TOKENS + REQUEST_TOKENS + NON_TEXT_TOKENS
    assert output_tokens(request, 4096) == 150 and output_tokens(with_image, 4096) == 4096  # max_tokens × n, else the budget's
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with_tools = request_of({"role": "user", "content": "hi"}, tools=tools)
    tools_json = len(b'{"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}')
    assert prompt_bound(with_tools) == 4 + 2 + MESSAGE_TOKENS + REQUEST_TOKENS + tools_json + TOOLS_TOKENS


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4", "gpt-3.5-turbo"])
def test_the_bound_covers_tiktoken_counts(model: str) -> None:
    gpt = Priced("g", "openai", "openai", "openai", model)
    encoding = openai_encoding(model)
    for text in TEXTS:
        request = request_of({"role": "system", "content": text}, {"role": "user", "content": text, "name": "ann"})
        # OpenAI's chat format: 3 per message, 1 per name, 3 to prime the reply.
        exact = 3 + 2 * 3 + sum(len(encoding.encode(s, disallowed_special=())) for s in ("system", text, "user", text, "ann")) + 1
        assert prompt_tokens(request, gpt) == exact <= prompt_bound(request), (model, text[:20])


def test_the_bound_covers_the_bundled_local_model_and_its_chat_template(local_provider: Any) -> None:
    """SmolLM2's template adds a 20-token default system prompt when a request has none: the
    per-request allowance is what keeps the bound a bound (8 per request would not)."""
    cases = [[{"role": "user", "content": text}] for text in TEXTS]
    cases += [
        [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}],
        [{"role": "user" if i % 2 == 0 else "assistant", "content": ""} for i in range(10)],
        [{"role": "user" if i % 2 == 0 else "assistant", "content": "1 2 3 4"} for i in range(10)],
    ]

    async def counts() -> list[int]:
        return [await local_provider.count_prompt_tokens(messages, "default") for messages in cases]

    for messages, counted in zip(cases, asyncio.run(counts()), strict=True):
        bound = prompt_bound(request_of(*messages))
        assert counted <= bound, (messages[0]["content"][:20], counted, bound)
    template_only = asyncio.run(local_provider.count_prompt_tokens([{"role": "user", "content": ""}], "default"))
    assert template_only - len("user") > MESSAGE_TOKENS + 8


# -- the stage: bound first, exact count only when the bound does not fit ----------------------

CONFIG = """
[routing]
retries = 0

[providers.up]
type = "openai"
base_url = "{base_url}"
pricing_id = "openai"

[models.g]
provider = "up"
model = "gpt-4o-mini"
[models.g.price]
input_per_mtok = "1"
output_per_mtok = "2"

[[budgets]]
name = "b"
limit = "{limit}"
"""
TEXT = "Count these words please"
MESSAGES = [{"role": "user", "content": TEXT}]
BOUND = 4 + len(TEXT) + MESSAGE_TOKENS + REQUEST_TOKENS
EXACT = 3 + 3 + len(openai_encoding("gpt-4o-mini").encode("user")) + len(openai_encoding("gpt-4o-mini").encode(TEXT))
BOUND_WORST = BOUND * MILLIONTH + 10 * 2 * MILLIONTH
EXACT_WORST = EXACT * MILLIONTH + 10 * 2 * MILLIONTH
REAL = 4 * MILLIONTH + 5 * 2 * MILLIONTH  # the upstream counts words: 4 in, 5 out ("Echo: Count these words please")


async def scenario(project: Path, up: OpenAIUpstream, limit: Decimal, ledger: Ledger, calls: int = 1) -> tuple[list[Any], dict[str, Any]]:
    (project / "keel.toml").write_text(CONFIG.format(base_url=up.base_url, limit=limit), encoding="utf-8")
    settings = load_settings()
    client = AsyncClient(settings, record=False)
    stage = with_budgets(build_routing(ProviderStage(), settings, client.resolve), settings, client.prices, ledger)
    assert isinstance(stage, BudgetStage)

    async def one() -> Any:
        call = client.prepare(TEXT, model="g", max_tokens=10)
        await stage.complete(call)
        return call

    try:
        outcomes = await asyncio.gather(*(one() for _ in range(calls)), return_exceptions=True)
        await ledger.drain()  # spending on a Redis lease reaches Redis at the lease's next flush
        [row] = await budget_status(settings, ledger)
        return outcomes, row
    finally:
        await stage.aclose()
        await client.aclose()


def test_a_call_with_room_reserves_the_byte_bound(project: Path, make_ledger: LedgerFactory) -> None:
    assert EXACT < BOUND
    with OpenAIUpstream() as up:
        [call], row = asyncio.run(scenario(project, up, D(1), make_ledger()))
    assert call.notes["budgets"] == {"b": format(BOUND_WORST.normalize(), "f")}
    assert (row["spent"], row["reserved"]) == (REAL, 0)


def test_a_call_whose_exact_worst_case_fits_is_not_refused_for_the_bound(project: Path, make_ledger: LedgerFactory) -> None:
    with OpenAIUpstream() as up:
        [call], row = asyncio.run(scenario(project, up, EXACT_WORST, make_ledger()))
        assert up.count == 1
    assert call.notes["budgets"] == {"b": format(EXACT_WORST.normalize(), "f")}
    assert (row["spent"], row["reserved"]) == (REAL, 0)


def test_the_refusal_near_the_limit_is_decided_on_the_exact_count(project: Path, make_ledger: LedgerFactory) -> None:
    with OpenAIUpstream() as up:
        [refused], row = asyncio.run(scenario(project, up, EXACT_WORST - D("1e-9"), make_ledger()))
        assert up.count == 0
    assert isinstance(refused, BudgetExceeded)
    assert refused.cost == EXACT_WORST and refused.spent == 0 and refused.reserved == 0
    assert (row["spent"], row["reserved"]) == (0, 0)


def test_concurrent_calls_near_the_limit_never_pass_it(project: Path, make_ledger: LedgerFactory) -> None:
    """Twelve slow calls against room for three exact worst cases (and not one byte bound): every
    call's bound is refused, its exact worst case asked for atomically; three fit."""
    limit = 3 * EXACT_WORST
    assert BOUND_WORST > limit
    with OpenAIUpstream() as up:
        up.script(Fault.SLOW, times=12, delay=0.3)
        outcomes, row = asyncio.run(scenario(project, up, limit, make_ledger(), calls=12))
    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    assert all(isinstance(o, BudgetExceeded) for o in outcomes if isinstance(o, BaseException)), outcomes
    assert len(answered) == 3
    assert row["spent"] == 3 * REAL <= limit and row["reserved"] == 0
