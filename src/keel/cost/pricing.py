"""Per-call cost from a maintained price catalog (genai-prices, offline) plus keel.toml overrides.

Looking a model up in genai-prices costs ~50 µs, so the rate of each (provider, model, day) is
resolved once and the request path only multiplies. Unknown prices stay unknown (None), never 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.metadata import version
from typing import Any

from ..settings import PriceSettings
from ..types import Cost, Usage

log = logging.getLogger("keel.cost")

MILLION = Decimal(1_000_000)

#: Hosts whose OpenAI-compatible API is priced by a genai-prices provider.
KNOWN_HOSTS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.mistral.ai": "mistral",
    "openai.azure.com": "azure",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.together.xyz": "together",
    "api.x.ai": "x-ai",
    "generativelanguage.googleapis.com": "google",
    "openrouter.ai": "openrouter",
}


@dataclass(frozen=True)
class Rate:
    """Prices per token (not per million), and where they came from."""

    input: Decimal
    output: Decimal
    cached_input: Decimal
    source: str

    @classmethod
    def per_million(cls, settings: PriceSettings, source: str) -> "Rate":
        inp, out, cached = settings.per_million()
        if settings.per_hour is not None:
            source += f" ({settings.per_hour}/hour at {settings.tokens_per_second} tokens/s)"
        return cls(input=inp / MILLION, output=out / MILLION, cached_input=cached / MILLION, source=source)

    def cost(self, usage: Usage) -> Decimal:
        uncached = max(usage.prompt_tokens - usage.cached_tokens, 0)
        return uncached * self.input + usage.cached_tokens * self.cached_input + usage.completion_tokens * self.output


FREE = Rate(Decimal(0), Decimal(0), Decimal(0), "local (runs on this machine)")


class PriceBook:
    """Resolves what a call cost. One per client; safe to share across threads."""

    def __init__(self, overrides: dict[tuple[str, str], Rate] | None = None) -> None:
        self._overrides = overrides or {}
        self._resolved: dict[tuple[str | None, str, date], Any] = {}
        self._warned: set[tuple[str | None, str]] = set()
        self.catalog = f"genai-prices {version('genai-prices')}"

    def cost(self, provider: str, pricing_id: str | None, model: str, usage: Usage, at: datetime | None = None) -> Cost:
        override = self._overrides.get((provider, model))
        if override is not None:
            return Cost(amount=override.cost(usage), source=override.source)
        if pricing_id == "local":
            return Cost(amount=Decimal(0), source=FREE.source)
        day = (at or datetime.now(UTC)).date()
        key = (pricing_id, model, day)
        entry = self._resolved.get(key)
        if entry is None:
            entry = self._resolved[key] = self._lookup(pricing_id, model, day)
        if entry is False:
            self._warn_unknown(pricing_id, model)
            return Cost(amount=None, source="unknown")
        if isinstance(entry, Rate):
            return Cost(amount=entry.cost(usage), source=entry.source)
        return Cost(amount=_tiered(entry, usage), source=f"{self.catalog} (tiered)")

    def rate(self, provider: str, pricing_id: str | None, model: str, at: datetime | None = None) -> Rate | str | None:
        """The effective rate for `keel prices`: a Rate, "tiered" (catalog tiers), or None (unknown)."""
        override = self._overrides.get((provider, model))
        if override is not None:
            return override
        if pricing_id == "local":
            return FREE
        entry = self._lookup(pricing_id, model, (at or datetime.now(UTC)).date())
        if entry is False:
            return None
        return entry if isinstance(entry, Rate) else "tiered"

    def _lookup(self, pricing_id: str | None, model: str, day: date) -> Any:
        """A Rate for flat prices, the catalog's ModelPrice for tiered ones, False when unknown."""
        if pricing_id is None:
            return False
        from genai_prices import Usage as GUsage
        from genai_prices import calc_price

        when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        try:
            found = calc_price(GUsage(input_tokens=0), model, provider_id=pricing_id, genai_request_timestamp=when)
        except LookupError:
            return False
        prices = found.model_price
        flat = [prices.input_mtok, prices.output_mtok, prices.cache_read_mtok]
        if all(p is None or isinstance(p, Decimal) for p in flat):
            source = f"{self.catalog}: {found.provider.id}/{found.model.id}"
            inp, out = prices.input_mtok or Decimal(0), prices.output_mtok or Decimal(0)
            cached = prices.cache_read_mtok if prices.cache_read_mtok is not None else inp
            return Rate(inp / MILLION, out / MILLION, cached / MILLION, source)
        return prices

    def _warn_unknown(self, pricing_id: str | None, model: str) -> None:
        if (pricing_id, model) in self._warned:
            return
        self._warned.add((pricing_id, model))
        log.warning(
            "No price known for model %r (price catalog provider %r): its cost is recorded as unknown. "
            "Add [models.<alias>.price] to keel.toml to set one.",
            model,
            pricing_id,
        )


def _tiered(prices: Any, usage: Usage) -> Decimal:
    from genai_prices import Usage as GUsage

    calc = prices.calc_price(
        GUsage(input_tokens=usage.prompt_tokens, cache_read_tokens=usage.cached_tokens, output_tokens=usage.completion_tokens)
    )
    return Decimal(calc["total_price"] if isinstance(calc, dict) else calc.total_price)


def pricing_id_for(kind: str, base_url: str | None, explicit: str | None) -> str | None:
    """Which genai-prices provider prices this endpoint; None when we cannot know (self-hosted)."""
    if explicit:
        return explicit
    if kind in ("local", "fake"):
        return "local"
    if kind == "anthropic" and not base_url:
        return "anthropic"
    if kind == "openai" and not base_url:
        return "openai"
    from urllib.parse import urlsplit

    host = urlsplit(base_url or "").hostname or ""
    for suffix, provider in KNOWN_HOSTS.items():
        if host == suffix or host.endswith("." + suffix):
            return provider
    return None
