"""Cost accounting and reports with exact figures; unknown stays unknown."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from testenv import run_keel

import keel
from keel.cost.pricing import PriceBook, Rate
from keel.errors import ConfigError
from keel.settings import PriceSettings
from keel.types import Usage

CONFIG = """
[providers.selfhosted]
type = "fake"
pricing_id = "none"

[models.priced]
provider = "fake"
model = "p"
[models.priced.price]
input_per_mtok = 1
output_per_mtok = 4
cached_input_per_mtok = 0.5

[models.unpriced]
provider = "selfhosted"
model = "mystery-7b"

[models.gpu]
provider = "fake"
model = "g"
[models.gpu.price]
per_hour = 3.6
tokens_per_second = 1000
"""


def keel_cli(project: Path, *args: str, ok: bool = True) -> str:
    result = run_keel(project, *args, ok=ok)
    return result.stdout if ok else result.stderr


def test_cached_tokens_are_priced_at_the_cached_rate() -> None:
    rate = Rate.per_million(PriceSettings(input_per_mtok=Decimal(1), output_per_mtok=Decimal(4), cached_input_per_mtok=Decimal("0.5")), "t")
    # 1000 prompt tokens of which 400 cached, 100 completion tokens
    assert rate.cost(Usage(prompt_tokens=1000, cached_tokens=400, completion_tokens=100)) == Decimal("0.0012")  # 600 × $1/M + 400 × $0.5/M + 100 × $4/M


def test_catalog_prices_cached_tokens_exactly() -> None:
    cost = PriceBook().cost("openai", "openai", "gpt-4o-mini", Usage(prompt_tokens=1000, cached_tokens=200, completion_tokens=500))
    # 800 × $0.15/M + 200 × $0.075/M + 500 × $0.60/M
    assert cost.amount == Decimal("0.000435") and cost.source == "genai-prices 0.2.3: openai/gpt-4o-mini"


def test_self_hosted_hourly_price_becomes_a_token_rate() -> None:
    settings = PriceSettings(per_hour=Decimal("3.6"), tokens_per_second=Decimal(1000))
    assert Rate.per_million(settings, "t").cost(Usage(prompt_tokens=0, completion_tokens=1_000_000)) == Decimal(1)
    with pytest.raises(ValueError, match="either input_per_mtok"):
        PriceSettings(per_hour=Decimal(1))


def test_report_groups_and_keeps_unknown_unknown(project: Path) -> None:
    (project / "keel.toml").write_text(CONFIG)
    with keel.Client() as client:
        client.complete("one two", model="priced", tags={"feature": "search"})  # 2 in, 3 out
        client.complete("three", model="priced", tags={"feature": "chat"})  # 1 in, 2 out
        client.complete("x", model="unpriced", tags={"feature": "chat"})
        assert client.flush()
    by_model = {row["model"]: row for row in json.loads(keel_cli(project, "cost", "report", "--by", "model", "--format", "json"))}
    assert Decimal(by_model["priced"]["cost_known"]) == Decimal("0.000023")  # 3 × $1/M + 5 × $4/M
    assert by_model["priced"]["calls"] == 2 and by_model["priced"]["prompt_tokens"] == 3
    assert by_model["unpriced"]["cost_known"] is None and by_model["unpriced"]["calls_with_unknown_cost"] == 1
    table = keel_cli(project, "cost", "report", "--by", "tag:feature")
    assert "unknown" in table and "search" in table
    csv_text = keel_cli(project, "cost", "report", "--by", "model", "--tag", "feature=chat", "--format", "csv")
    assert csv_text.splitlines()[0].startswith("model,calls") and len(csv_text.splitlines()) == 3
    prices = keel_cli(project, "prices")
    assert "unknown" in prices and "keel.toml" in prices and "genai-prices" not in prices.split("local")[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("cost", "report", "--by", "tag:nope"), "Unknown tag 'nope'"),
        (("cost", "report", "--by", "colour"), "Cannot group by 'colour'"),
        (("cost", "report", "--format", "xml"), "--format must be"),
        (("cost", "report", "--tag", "novalue"), "key=value"),
        (("cost", "report", "--since", "10X"), "neither an age"),
    ],
)
def test_report_bad_input(project: Path, args: tuple[str, ...], fragment: str) -> None:
    assert fragment in keel_cli(project, *args, ok=False)


def test_negative_price_in_config_is_rejected(project: Path) -> None:
    (project / "keel.toml").write_text('[models.m]\nprovider = "fake"\nmodel = "x"\n[models.m.price]\ninput_per_mtok = -1\noutput_per_mtok = 1\n')
    with pytest.raises(ConfigError, match="input_per_mtok"):
        keel.load_settings()


def test_a_dated_price_change_keeps_old_calls_at_old_prices() -> None:
    from datetime import UTC, datetime

    book = PriceBook()
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=0)
    # genai-prices: avian's deepseek-v4-flash input went from $0.0805/M to $0.14/M on 2026-10-18
    before = book.cost("avian", "avian", "deepseek/deepseek-v4-flash", usage, datetime(2026, 10, 1, tzinfo=UTC))
    after = book.cost("avian", "avian", "deepseek/deepseek-v4-flash", usage, datetime(2026, 11, 1, tzinfo=UTC))
    assert (before.amount, after.amount) == (Decimal("0.0805"), Decimal("0.14"))
