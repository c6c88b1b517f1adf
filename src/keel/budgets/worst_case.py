"""The most a call can cost, known before it is sent.

    worst case = prompt tokens (an upper bound) × input price
               + output tokens allowed (max_tokens, else the budget's reserve_max_tokens) × n × output price

priced for the call's model and for each of its fallbacks, keeping the highest (a fallback may
answer instead). Tiered catalog prices are applied to those token counts, so the worst case
follows the tiers.

Prompt tokens, two ways:

`prompt_bound`, for every model, costs a few µs: the UTF-8 bytes of the prompt's strings, plus
allowances for what a chat template adds. It is an upper bound for byte-level tokenizers
(tiktoken's encodings; the BPE and SentencePiece-with-byte-fallback vocabularies of GGUF models):
every token of the text covers at least one byte of it. What is not the text gets an allowance:
  - `MESSAGE_TOKENS` per message: role markers and separators (ChatML, Llama 3, Gemma: ~5 tokens
    beyond the role's own bytes), the space a SentencePiece tokenizer prefixes to each text piece
    between special tokens, OpenAI's 3 per message and 1 per name;
  - `REQUEST_TOKENS` once: the reply's priming (`<|im_start|>assistant\n`), BOS, and the default
    system prompt some templates insert when the request has none: 26 tokens with the bundled
    SmolLM2 (checked in tests/budgets/test_prompt_bound.py), about as many with Qwen 2.5 or
    Llama 3.x's date header;
  - `TOOLS_TOKENS` when the request has tools or functions: the tool-use instructions a provider
    or template adds around their JSON (Anthropic's pricing docs list up to 530 tokens);
  - `NON_TEXT_TOKENS` per image, audio or file part: these cannot be counted from the request,
    so this one is an allowance, not a bound.
Special-token text inside a message ("<|im_end|>") only makes the count smaller (one token for
many bytes). Tools, functions and response_format count as their JSON.

`prompt_tokens` counts exactly where Keel has the model's tokenizer offline, for OpenAI's own
models (OpenAI or Azure endpoints: tiktoken), and is the bound for every other model. It never
exceeds the bound. The budget stage reserves with the bound, and counts only when the bound does
not fit (tiktoken costs 14-32 µs a request): a call is never refused for the bound's slack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from ..cost.pricing import PriceBook, Rate, pricing_id_for
from ..pipeline import Target
from ..settings import Settings
from ..tokenizers import count_openai_messages, count_openai_text
from ..types import ChatRequest, Message, Usage
from .ledger import PICOS_PER_UNIT, to_units

#: Chat-template tokens per message (role markers, separators) on top of its text bytes.
MESSAGE_TOKENS = 8
#: Chat-template tokens per request: reply priming, BOS, a default system prompt.
REQUEST_TOKENS = 64
#: Tool-use instructions a provider or chat template adds when a request has tools.
TOOLS_TOKENS = 1024
#: Tokens reserved for each image, audio or file part of a message.
NON_TEXT_TOKENS = 4096
#: Request fields that are sent to the model as prompt tokens.
PROMPT_FIELDS = ("tools", "functions", "tool_choice")
#: Request fields that make a provider or template add tool-use instructions.
TOOL_FIELDS = ("tools", "functions")
#: Catalog ids whose endpoints run OpenAI's own models (tokenised exactly by tiktoken).
OPENAI_PRICING_IDS = ("openai", "azure")
#: Picodollars (picos of the price's currency) in one dollar.
PICOS_PER_CURRENCY_UNIT = Decimal(10**12)


@dataclass(frozen=True)
class Priced:
    """A model a call may be answered by, as pricing sees it."""

    alias: str
    provider: str
    kind: str
    pricing_id: str | None
    model: str

    @classmethod
    def of(cls, target: Target) -> "Priced":
        return cls(target.alias, target.provider.name, target.provider.kind, target.pricing_id, target.model)

    @property
    def exact_tokenizer(self) -> bool:
        return self.kind == "openai" and self.pricing_id in OPENAI_PRICING_IDS

    def describe(self) -> str:
        return f"{self.alias!r} ({self.provider}/{self.model})"


def prompt_bound(request: ChatRequest) -> int:
    """An upper bound of the prompt tokens any byte-level tokenizer bills for `request` (see above)."""
    total = REQUEST_TOKENS + MESSAGE_TOKENS * len(request.messages)
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            total += len(content) if content.isascii() else len(content.encode())  # _utf8, inlined: the hot path
        elif content:
            for part in content:
                if part.get("type") == "text":
                    total += _utf8(part.get("text", ""))
                else:
                    total += NON_TEXT_TOKENS
        total += len(message.role)  # one of the ASCII roles (types.Role)
        if message.name:
            total += _utf8(message.name)
        extra = message.__pydantic_extra__  # model_extra without the property's cost
        if extra:
            total += len(orjson.dumps(extra))
    if request.__pydantic_extra__ or request.response_format is not None:
        extras = _extras(request)
        if extras:
            total += len(orjson.dumps(extras))
            if any(field in extras for field in TOOL_FIELDS):
                total += TOOLS_TOKENS
    return total


def prompt_tokens(request: ChatRequest, model: Priced) -> int:
    """The prompt tokens `model` bills for `request`, counted with its tokenizer when Keel has it
    offline (OpenAI's models), else `prompt_bound`. Never more than `prompt_bound`."""
    if not model.exact_tokenizer:
        return prompt_bound(request)
    messages = [_flatten(message) for message in request.messages]
    non_text = sum(_non_text_parts(message) for message in request.messages) * NON_TEXT_TOKENS
    extras = _extras(request)
    extra_tokens = count_openai_text(orjson.dumps(extras).decode(), model.model) if extras else 0
    return count_openai_messages(messages, model.model) + extra_tokens + non_text


def output_tokens(request: ChatRequest, reserve_max_tokens: int) -> int:
    """The output tokens the call may produce: its own limit, else the budget's, per choice."""
    limit = request.token_limit or reserve_max_tokens
    choices = (request.model_extra or {}).get("n")
    return limit * (choices if isinstance(choices, int) and choices > 1 else 1)


def worst_cost(rates: "Rates", models: list[Priced], prompt: int | dict[Priced, int], output: int, at: float) -> tuple[Decimal | None, Priced]:
    """The highest cost over `models` for these prompt token counts (one for all, or per model) at
    Unix time `at`; (None, that model) if one has no price."""
    worst, costliest = Decimal(0), models[0]
    for model in models:
        amount = rates.worst(model, prompt if isinstance(prompt, int) else prompt[model], output, at)
        if amount is None:
            return None, model
        if amount > worst:
            worst, costliest = amount, model
    return worst, costliest


#: A flat rate per token in picodollars: (input, output, cached input).
Picos = tuple[int, int, int]


def _whole_picos(prices: tuple[Decimal, Decimal, Decimal]) -> Picos | None:
    """Prices per token in whole picodollars; None if one is finer than that."""
    scaled = [price * PICOS_PER_CURRENCY_UNIT for price in prices]
    if any(value != value.to_integral_value() for value in scaled):
        return None
    return int(scaled[0]), int(scaled[1]), int(scaled[2])


def units_of(usage: Usage, picos: Picos) -> int:
    """What `usage` cost at a flat rate in picodollars, in ledger units rounded up."""
    cached = usage.cached_tokens
    total = max(usage.prompt_tokens - cached, 0) * picos[0] + usage.completion_tokens * picos[1] + cached * picos[2]
    return -(-total // PICOS_PER_UNIT)


class Rates:
    """Prices for the request path, at Unix times: each model's flat per-token rate is resolved
    once per UTC day (a catalog lookup costs ~50 µs), then a cost is two multiplications. Tiered
    and unknown prices go through `PriceBook.cost` every time, as the recording stage prices them."""

    def __init__(self, prices: PriceBook) -> None:
        self.prices = prices
        #: (provider, pricing id, model, UTC day number) → the flat rate (None: ask `prices.cost`),
        #: and the same in whole picodollars (None: no flat rate, or one finer than that).
        self._rates: dict[tuple[str, str | None, str, int], tuple[Rate | None, Picos | None]] = {}

    def cost(self, provider: str, pricing_id: str | None, model: str, usage: Usage, at: float) -> Decimal | None:
        """What `usage` cost on `model` (None: no price known)."""
        rate = self._rate(provider, pricing_id, model, at)[0]
        if rate is None:
            return self.prices.cost(provider, pricing_id, model, usage, datetime.fromtimestamp(at, UTC)).amount
        return rate.cost(usage)

    def worst(self, model: Priced, prompt: int, output: int, at: float) -> Decimal | None:
        """What `prompt` tokens in and `output` tokens out cost on `model`, nothing cached."""
        rate = self._rate(model.provider, model.pricing_id, model.model, at)[0]
        if rate is None:
            usage = Usage(prompt_tokens=prompt, completion_tokens=output)
            return self.prices.cost(model.provider, model.pricing_id, model.model, usage, datetime.fromtimestamp(at, UTC)).amount
        return prompt * rate.input + output * rate.output

    def picos(self, model: Priced, at: float) -> Picos | None:
        """`model`'s flat rate in whole picodollars per token (None: tiered, unknown or finer)."""
        return self._rate(model.provider, model.pricing_id, model.model, at)[1]

    def cost_units(self, provider: str, pricing_id: str | None, model: str, usage: Usage, at: float) -> int | None:
        """What `usage` cost on `model` in ledger units, rounded up (None: no price known); in
        integers when the rate is whole picodollars, else through `cost`."""
        picos = self._rate(provider, pricing_id, model, at)[1]
        if picos is None:
            cost = self.cost(provider, pricing_id, model, usage, at)
            return None if cost is None else to_units(cost)
        return units_of(usage, picos)

    def _rate(self, provider: str, pricing_id: str | None, model: str, at: float) -> tuple[Rate | None, Picos | None]:
        key = (provider, pricing_id, model, int(at // 86400))
        try:
            return self._rates[key]
        except KeyError:
            pass
        if len(self._rates) >= 1024:  # a long-running gateway: yesterday's rates go
            self._rates.clear()
        found = self.prices.rate(provider, pricing_id, model, datetime.fromtimestamp(at, UTC))
        rate = found if isinstance(found, Rate) else None
        whole = None if rate is None else _whole_picos((rate.input, rate.output, rate.cached_input))
        self._rates[key] = (rate, whole)
        return rate, whole


class Candidates:
    """The models a call may be answered by: its target, then its model's fallbacks (as the
    fallback stage resolves them, from the same settings)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._fallbacks: dict[str, list[Priced]] = {}
        #: (alias, provider, model, pricing id) of a target → its candidates (shared: never mutated).
        self._candidates: dict[tuple[str, str, str, str | None], list[Priced]] = {}

    def __call__(self, target: Target) -> list[Priced]:
        key = (target.alias, target.provider.name, target.model, target.pricing_id)
        found = self._candidates.get(key)
        if found is not None:
            return found
        primary = Priced.of(target)
        fallbacks = self._fallbacks.get(target.alias)
        if fallbacks is None:
            fallbacks = self._fallbacks[target.alias] = self._resolve_fallbacks(target.alias)
        seen = {(primary.provider, primary.model)}
        out = [primary]
        for model in fallbacks:
            if (model.provider, model.model) not in seen:
                seen.add((model.provider, model.model))
                out.append(model)
        if len(self._candidates) >= 1024:  # aliases can be "provider/model" names: bound the memory
            self._candidates.clear()
        self._candidates[key] = out
        return out

    def _resolve_fallbacks(self, alias: str) -> list[Priced]:
        config = self.settings.models.get(alias)
        resolved = [self._priced(name) for name in (config.fallbacks if config is not None else [])]
        # A name that does not resolve is the fallback stage's ConfigError to raise, not ours.
        return [model for model in resolved if model is not None]

    def _priced(self, name: str) -> Priced | None:
        alias = self.settings.models.get(name)
        if alias is not None:
            provider, model = alias.provider, alias.model
        else:
            provider, sep, model = name.partition("/")
            if not sep or not model:
                return None
        config = self.settings.providers.get(provider)
        if config is None:
            return None
        return Priced(name, provider, config.type, pricing_id_for(config.type, config.base_url, config.pricing_id), model)


def _flatten(message: Message) -> dict[str, str]:
    """A message as the strings a model reads: role, text, name, and any other field as JSON
    (tool calls, tool_call_id …)."""
    out = {"role": message.role, "content": message.text()}
    if message.name:
        out["name"] = message.name
    if message.model_extra:
        out["extra"] = orjson.dumps(message.model_extra).decode()
    return out


def _extras(request: ChatRequest) -> dict[str, object]:
    """The request's fields besides messages that reach the model as prompt text."""
    passthrough = request.model_extra or {}
    extras = {k: passthrough[k] for k in PROMPT_FIELDS if k in passthrough}
    if request.response_format is not None:
        extras["response_format"] = request.response_format.model_dump(exclude_none=True, by_alias=True)
    return extras


def _utf8(text: str) -> int:
    """The UTF-8 length of `text` (for ASCII, its length: no encoding needed)."""
    return len(text) if text.isascii() else len(text.encode())


def _non_text_parts(message: Message) -> int:
    if not isinstance(message.content, list):
        return 0
    return sum(1 for part in message.content if part.get("type") != "text")


#: Given a call's target, the models that may answer it (the target first).
Models = Callable[[Target], list[Priced]]
