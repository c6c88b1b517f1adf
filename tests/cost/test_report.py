"""Cost accounting and reports with exact figures; unknown stays unknown."""

from __future__ import annotations

import json
import os
import time
import uuid
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from testenv import run_keel

import keel
from keel.cost.pricing import PriceBook, Rate
from keel.cost.report import Group, cost_report
from keel.errors import ConfigError
from keel.settings import PriceSettings
from keel.store import Store, cost_query, open_store
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


def test_report_as_an_html_page_with_a_bar_per_group(project: Path) -> None:
    import xml.etree.ElementTree as ET

    (project / "keel.toml").write_text(CONFIG)
    with keel.Client() as client:
        client.complete("one two", model="priced", tags={"feature": "search"})  # 2 in, 3 out: $0.000014
        client.complete("three", model="priced", tags={"feature": "chat"})  # 1 in, 2 out: $0.000009
        client.complete("x", model="unpriced", tags={"feature": "chat"})
        client.complete("y", model="unpriced", tags={"feature": "other"})
        assert client.flush()
    page = keel_cli(project, "cost", "report", "--by", "tag:feature", "--format", "html")
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing fetched from elsewhere
    svg = ET.fromstring(page[page.index("<svg"):page.index("</svg>") + 6])
    bars = {bar.find("{http://www.w3.org/2000/svg}title").text: float(bar.get("width")) for bar in svg.iter("{http://www.w3.org/2000/svg}rect")}
    assert bars == {"search: $0.000014": 420.0, "chat: $0.000009 + 1 unknown": pytest.approx(420 * 9 / 14, abs=0.05)}
    assert ">other</text><text x='230' y='" in page and "fill='#b00'>unknown</text>" in page  # no bar, said unknown
    assert "<td>search</td><td>1</td>" in page


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


# --- keel cost report: sums in the database, one suite over SQLite and PostgreSQL -------------

# UTC instants around a month end and an ISO year end (1 January 2027 is a Friday of 2026-W53).
NOV_30_LAST_SECOND, DEC_1 = 1796083199.0, 1796083200.0
DEC_31_LAST_SECOND, JAN_1, JAN_4 = 1798761599.0, 1798761600.0, 1799020800.0

#: Every shape of cost string str(Decimal) writes: plain below 1, long (a per-hour rate's 28
#: digits), exponent notation, 1 and above, zero with an exponent, unknown (None); and 36 and 37
#: decimals, either side of what SQLite sums in chunks.
COSTS = ["0.000012345", "0.1", "0.002882936507936507936507936508", "1.5E-7", "2.882936507936507936507936508E-7",
         "1.25", "0", "0E-8", "0.000000123456789012345678901234567890", "0.0000001234567890123456789012345678901", None]


def call(started_at: float = DEC_1, cost: str | None = "0.00001", **fields: Any) -> dict[str, Any]:
    """A trace record as the recorder writes it (only what the report reads is set)."""
    return {"id": uuid.uuid4().hex, "started_at": started_at, "provider": "openai", "model": "mini", "status": "ok",
            "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 2, "cost": cost, "tags": {}} | fields


def exact_sum(costs: list[str | None]) -> Decimal:
    with localcontext() as context:
        context.prec = 200
        return sum((Decimal(c) for c in costs if c is not None), Decimal(0))


def by_key(groups: list[Group]) -> dict[tuple[str, ...], Group]:
    return {group.key: group for group in groups}


def test_every_cost_shape_sums_exactly(store: Store) -> None:
    mixed = [call(cost=cost) for cost in COSTS * 3]
    per_hour = [call(model="gpu", cost=str(Decimal(n) * Decimal("2.5") / 2520000)) for n in range(1, 400)]
    unpriced = [call(model="mystery", cost=None, status="error") for _ in range(2)]
    store.insert_traces(mixed + per_hour + unpriced)
    groups = by_key(cost_report(store, ["model"]))
    mini = groups[("mini",)]
    assert mini.known_cost == exact_sum(COSTS * 3) == Decimal("4.0586879001454959788359781693123597403")
    assert (mini.calls, mini.unknown_cost_calls, mini.prompt_tokens, mini.completion_tokens, mini.cached_tokens) == (33, 3, 330, 165, 66)
    assert groups[("gpu",)].known_cost == exact_sum([t["cost"] for t in per_hour])
    mystery = groups[("mystery",)]
    assert (mystery.calls, mystery.unknown_cost_calls, mystery.cost_text) == (2, 2, "unknown")
    assert mystery.as_dict(["model"])["cost_known"] is None
    assert mini.as_dict(["model"])["cost_known"] == "4.0586879001454959788359781693123597403"
    assert mini.cost_text == "$4.058688 + 3 unknown"
    assert list(groups) == [("mini",), ("gpu",), ("mystery",)]  # largest known cost first


def test_a_group_of_only_tiny_costs_stays_a_plain_decimal(store: Store) -> None:
    store.insert_traces([call(cost="1.5E-7"), call(cost="2E-7")])
    (group,) = cost_report(store, ["model"])
    assert group.known_cost == Decimal("3.5E-7") and group.as_dict(["model"])["cost_known"] == "0.00000035"


def test_group_by_tag_provider_status_and_prompt(store: Store) -> None:
    store.insert_traces([
        call(tags={"feature": "search", "tenant": "acme"}, cost="0.25"),
        call(tags={"feature": "search", "tenant": "zeta"}, cost="0.5", provider="anthropic"),
        call(tags={"feature": "chat", "tenant": "acme"}, cost=None, status="error"),
        call(tags={"tenant": "acme"}, cost="0.125", prompt_name="summarize", prompt_version="ab" * 32),
        call(tags={}, cost="0.0625", model="", provider=None),
    ])
    figures = {g.key: (g.calls, g.known_cost, g.unknown_cost_calls) for g in cost_report(store, ["tag:feature"])}
    assert figures == {("search",): (2, Decimal("0.75"), 0), ("chat",): (1, Decimal(0), 1), ("(none)",): (2, Decimal("0.1875"), 0)}
    keys = [g.key for g in cost_report(store, ["provider", "status", "prompt", "model"])]
    assert keys == [("anthropic", "ok", "(none)", "mini"), ("openai", "ok", "(none)", "mini"), ("openai", "ok", "summarize@abababab", "mini"),
                    ("(none)", "ok", "(none)", "(none)"), ("openai", "error", "(none)", "mini")]
    acme = {g.key: (g.calls, g.known_cost) for g in cost_report(store, ["tag:feature"], tags={"tenant": "acme"})}
    assert acme == {("search",): (1, Decimal("0.25")), ("(none)",): (1, Decimal("0.125")), ("chat",): (1, Decimal(0))}
    assert cost_report(store, ["model"], tags={"tenant": "acme", "feature": "search"})[0].calls == 1
    assert cost_report(store, ["model"], tags={"tenant": "nobody"}) == []


def test_an_unknown_tag_lists_the_tags_seen_in_range(store: Store) -> None:
    with pytest.raises(ConfigError, match="Tags seen: none recorded yet"):
        cost_report(store, ["tag:feature"])
    store.insert_traces([call(started_at=DEC_1, tags={"tenant": "acme", "env": "prod"}),
                         call(started_at=JAN_1, tags={"team": "search"})])
    with pytest.raises(ConfigError, match=r"Unknown tag 'feature': no call in range carries it\. Tags seen: env, team, tenant\."):
        cost_report(store, ["model", "tag:feature"])
    with pytest.raises(ConfigError, match=r"Tags seen: team\.$"):
        cost_report(store, ["tag:tenant"], since=JAN_1)
    with pytest.raises(ConfigError, match=r"Tags seen: env, tenant\.$"):
        cost_report(store, ["tag:team"], tags={"tenant": "acme"})
    with pytest.raises(ConfigError, match="Cannot group by 'tag:'"):
        cost_report(store, ["tag:"])


def test_periods_are_utc_days_iso_weeks_and_months(store: Store) -> None:
    store.insert_traces([call(started_at=t, cost="0.5") for t in (NOV_30_LAST_SECOND, DEC_1, DEC_31_LAST_SECOND, JAN_1, JAN_4)])
    day = {g.key: g.calls for g in cost_report(store, ["day"])}
    assert day == {("2026-11-30",): 1, ("2026-12-01",): 1, ("2026-12-31",): 1, ("2027-01-01",): 1, ("2027-01-04",): 1}
    assert {g.key: g.calls for g in cost_report(store, ["week"])} == {("2026-W49",): 2, ("2026-W53",): 2, ("2027-W01",): 1}
    month = {g.key: (g.calls, g.known_cost) for g in cost_report(store, ["month", "model"])}
    assert month == {("2026-11", "mini"): (1, Decimal("0.5")), ("2026-12", "mini"): (2, Decimal("1.0")), ("2027-01", "mini"): (2, Decimal("1.0"))}


def test_since_keeps_calls_started_at_or_after_it(store: Store) -> None:
    store.insert_traces([call(started_at=t, cost="0.5") for t in (NOV_30_LAST_SECOND, DEC_1, JAN_1)])
    assert [(g.calls, g.known_cost) for g in cost_report(store, ["model"], since=DEC_1)] == [(2, Decimal("1.0"))]
    assert cost_report(store, ["model"], since=JAN_4) == []


def test_a_large_sqlite_table_is_summed_in_parts_at_once_to_the_same_totals(tmp_path: Path) -> None:
    rows = [call(started_at=DEC_1 + 86400 * (i % 45), cost=COSTS[i % len(COSTS)], model=("mini", "gpu")[i % 2],
                 tags={"feature": f"f{i % 3}"}) for i in range(660)]
    with open_store(f"sqlite:///{tmp_path / 'keel.db'}") as store:
        store.insert_traces(rows)
        sent: list[str] = []
        event.listen(store.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: sent.append(sql))
        for by in (["model"], ["month", "tag:feature"], ["week", "status"]):
            sent.clear()
            in_parts = cost_query.totals(store.engine, by, part_rows=100)
            assert sum("GROUP BY" in sql for sql in sent) == min(os.cpu_count() or 1, 4)
            assert sorted(in_parts, key=repr) == sorted(cost_query.totals(store.engine, by, part_rows=10**9), key=repr)
        mini = next(row for row in cost_query.totals(store.engine, ["model"], part_rows=100) if row["key"] == ("mini",))
    assert mini["cost"] == exact_sum([row["cost"] for row in rows if row["model"] == "mini"])
    assert mini["calls"] == 330


def test_an_in_memory_sqlite_store_is_summed_in_one_statement() -> None:
    with open_store("sqlite:///:memory:") as store:  # each thread's connection would see a database of its own
        store.insert_traces([call(cost="0.1") for _ in range(50)])
        (row,) = cost_query.totals(store.engine, ["model"], part_rows=5)
    assert (row["calls"], row["cost"]) == (50, Decimal("5.0"))


def test_cli_report_on_both_databases(store_url: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    with open_store(store_url) as store:
        store.insert_traces([
            call(started_at=now - 60, cost="0.002882936507936507936507936508", tags={"feature": "search"}),
            call(started_at=now - 120, cost="1.5E-7", tags={"feature": "search"}),
            call(started_at=now - 180, cost=None, tags={"feature": "chat"}),
            call(started_at=now - 10 * 86400, cost="0.5", tags={"feature": "search"}),
        ])
    monkeypatch.setenv("KEEL_STORE_URL", store_url)
    rows = json.loads(keel_cli(project, "cost", "report", "--by", "tag:feature", "--since", "7d", "--format", "json"))
    assert rows == [
        {"tag:feature": "search", "calls": 2, "prompt_tokens": 20, "completion_tokens": 10, "cached_tokens": 4,
         "cost_known": "0.002883086507936507936507936508", "calls_with_unknown_cost": 0},
        {"tag:feature": "chat", "calls": 1, "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 2,
         "cost_known": None, "calls_with_unknown_cost": 1},
    ]
    csv_lines = keel_cli(project, "cost", "report", "--by", "model", "--tag", "feature=search", "--format", "csv").splitlines()
    assert csv_lines == ["model,calls,prompt_tokens,completion_tokens,cached_tokens,cost_known,calls_with_unknown_cost",
                         "mini,3,30,15,6,0.502883086507936507936507936508,0"]
    assert "Tags seen: feature" in keel_cli(project, "cost", "report", "--by", "tag:team", ok=False)
