"""Cost projections: figures computed by hand; the CLI end to end on the fake provider."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import keel
from keel.cli.cost_project import project
from keel.cost.pricing import Rate
from keel.cost.projection import (
    Candidate,
    break_even,
    cost_curves,
    parse_traffic,
    percentile,
    project_costs,
    render_svg,
    token_stats,
)
from keel.errors import ConfigError, UnknownModel
from keel.settings import PriceSettings

M = Decimal(1_000_000)


def row(prompt: int, completion: int, cached: int = 0, *, hit: bool = False, name: str | None = "summarize", **extra: Any) -> dict[str, Any]:
    return {
        "prompt_name": name, "model": "a", "provider": "fake", "upstream_model": "m1", "prompt_tokens": prompt,
        "completion_tokens": completion, "cached_tokens": cached, "notes": {"cache": "hit"} if hit else {}, **extra,
    }


def api(name: str, inp: str, out: str, cached: str) -> Candidate:
    return Candidate(name, rate=Rate.per_million(PriceSettings(input_per_mtok=Decimal(inp), output_per_mtok=Decimal(out), cached_input_per_mtok=Decimal(cached)), "t"))


# -- pure functions ---------------------------------------------------------------------------


def test_parse_traffic_accepts_suffixes_in_any_case() -> None:
    assert parse_traffic("1k,100K, 10M,2b") == [Decimal(1000), Decimal(100_000), Decimal(10_000_000), Decimal(2_000_000_000)]
    assert parse_traffic("2.5M/month,300") == [Decimal(300), Decimal(2_500_000)]
    assert parse_traffic("1k,1000") == [Decimal(1000)]


@pytest.mark.parametrize("spec, bad", [("1k,10X/month", "10X/month"), ("-5k", "-5k"), ("", ""), ("0", "0"), ("1k,,2k", "")])
def test_parse_traffic_names_the_bad_part(spec: str, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_traffic(spec)
    assert repr(bad) in str(caught.value)
    assert "1k,100k,10M" in str(caught.value) or "more than 0" in str(caught.value)


def test_token_stats_mean_percentiles_cache_hits_and_routing() -> None:
    prompts = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    rows = [row(p, p // 10, cached=5 if p <= 40 else 0, hit=p in (10, 20)) for p in prompts]
    rows[2]["provider"], rows[2]["upstream_model"] = "backup", "m2"  # one of the 8 answered calls went elsewhere
    rows.append(row(7, 3, name=None, model="b"))  # a plain call groups under its model alias
    summarize, plain = token_stats(rows)
    assert (summarize.group, summarize.calls, plain.group, plain.calls) == ("summarize", 10, "b", 1)
    assert summarize.prompt.mean == Decimal(55)  # 550 / 10
    assert summarize.prompt.p50 == 50  # rank ceil(0.5 × 10) = 5
    assert summarize.prompt.p95 == 100  # rank ceil(0.95 × 10) = 10
    assert summarize.completion.mean == Decimal("5.5") and summarize.completion.p50 == 5
    assert summarize.cached.mean == Decimal(2) and summarize.cached.p50 == 0 and summarize.cached.p95 == 5  # 4 × 5 / 10
    assert summarize.cache_hit_rate == Decimal("0.2")
    assert summarize.routing == {"fake/m1": Decimal("0.875"), "backup/m2": Decimal("0.125")}  # 7/8, 1/8
    assert percentile(list(range(1, 21)), 95) == 19  # rank ceil(19) = 19
    by_model = token_stats(rows, by="model")
    assert {s.group: s.calls for s in by_model} == {"a": 10, "b": 1}


def test_cost_per_request_uses_cached_rate_and_cache_hit_rate() -> None:
    # 4 calls: mean prompt 1000 of which 400 cached, mean completion 200; one of four is a cache hit
    rows = [row(1000, 200, 400, hit=i == 0) for i in range(4)]
    (stats,) = token_stats(rows)
    model = api("m", "2", "8", "0.5")
    # per request: (600 × 2 + 400 × 0.5 + 200 × 8) / 1M = 3000 / 1M = 0.003, × (1 − 0.25) = 0.00225
    volumes = parse_traffic("1k,100k,10M")
    projected = project_costs(stats, [model], volumes, price_per_request=Decimal("0.01"))
    assert [p.per_request for p in projected] == [Decimal("0.00225")] * 3
    assert [p.monthly for p in projected] == [Decimal("2.25"), Decimal(225), Decimal(22_500)]
    assert [p.revenue for p in projected] == [Decimal(10), Decimal(1000), Decimal(100_000)]
    assert [p.margin for p in projected] == [Decimal("7.75"), Decimal(775), Decimal(77_500)]


def test_unknown_price_is_never_zero() -> None:
    (stats,) = token_stats([row(10, 10)])
    (p,) = project_costs(stats, [Candidate("mystery")], [Decimal(1000)], price_per_request=Decimal(1))
    assert p.monthly is None and p.per_request is None and p.margin is None and p.note == "unknown price"
    assert break_even(stats, Candidate("gpu", per_hour=Decimal(1), tokens_per_second=Decimal(10)), Candidate("mystery")) is None


def test_self_hosted_cost_is_fixed_per_instance_and_break_even() -> None:
    # every call: 900 prompt + 100 completion tokens, no cache → 1000 tokens per request
    (stats,) = token_stats([row(900, 100)] * 3)
    gpu = Candidate("gpu", per_hour=Decimal(2), tokens_per_second=Decimal(1000))
    # one instance serves 1000 × 3600 × 730 = 2,628,000,000 tokens = 2,628,000 requests a month, for 2 × 730 = $1460
    cheap = api("cheap", "1", "1", "1")  # $0.001 per request
    costs = project_costs(stats, [gpu], parse_traffic("1k,100k,10M"))
    assert [(p.monthly, p.instances) for p in costs] == [(Decimal(1460), 1), (Decimal(1460), 1), (Decimal(5840), 4)]  # 10M / 2.628M → 4
    assert break_even(stats, gpu, cheap) == Decimal(1_460_000)  # 1460 / 0.001, below one instance's 2,628,000
    # an API at $0.0005 per request would break even at 2,920,000 requests: more than one instance serves
    assert break_even(stats, gpu, api("cheaper", "0.5", "0.5", "0.5")) is None


def test_svg_has_one_polyline_per_curve_and_axis_labels() -> None:
    (stats,) = token_stats([row(900, 100)])
    gpu = Candidate("gpu", per_hour=Decimal(2), tokens_per_second=Decimal(1000))
    curves = cost_curves(stats, [gpu, api("cheap", "1", "1", "1"), Candidate("mystery")], Decimal(1000), Decimal(10**7))
    assert set(curves) == {"gpu", "cheap"}  # unknown prices are not drawn
    svg = render_svg(curves, [("gpu = cheap", 1_460_000.0, 1460.0)], title="t <&>")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2 and len(root.findall(f"{ns}circle")) == 2  # mark + legend
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "requests per month (log scale)" in texts and "monthly cost, $ (log scale)" in texts and "t <&>" in texts


# -- the command --------------------------------------------------------------------------------

CONFIG = """
[models.a]
provider = "fake"
model = "a"
[models.a.price]
input_per_mtok = 1
output_per_mtok = 4
cached_input_per_mtok = 0.5

[models.b]
provider = "fake"
model = "b"
[models.b.price]
per_hour = 3.6
tokens_per_second = 1000

[providers.selfhosted]
type = "fake"
pricing_id = "none"

[models.c]
provider = "selfhosted"
model = "mystery-7b"
"""


def invoke(*args: str) -> Any:
    app = typer.Typer()
    app.command()(project)
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})


@pytest.fixture
def traced(project: Path) -> Path:
    (project / "keel.toml").write_text(CONFIG)
    with keel.Client() as client:
        client.complete("one two", model="a")  # 2 in, 3 out ("Echo: one two")
        client.complete("three four five six", model="a")  # 4 in, 5 out
        client.complete("x", model="a")  # 1 in, 2 out
        assert client.flush()
    return project


def test_cli_projects_table_csv_and_chart(traced: Path) -> None:
    result = invoke("--traffic", "1k,1M", "--models", "a,b", "--csv", "out.csv", "--chart", "out.svg", "--price-per-request", "0.001")
    assert result.exit_code == 0, result.output
    # mean 7/3 prompt, 10/3 completion tokens: a costs (7/3 × 1 + 10/3 × 4) / 1M = 47/3 / 1M per request
    per_request = Decimal(47) / 3 / M
    assert f"${per_request * 1000:.6f}" in result.output  # $0.015667 a month at 1k
    assert f"${per_request * 1_000_000:,.2f}" in result.output  # $15.67 at 1M
    assert "$2,628.00" in result.output  # b: one instance, 3.6 × 730, at any of these volumes
    assert "2.3/2/4" in result.output  # prompt tokens mean/p50/p95
    assert "fake/a 100%" in result.output
    # margin at 1M: 1M × $0.001 − $15.67 = $984.33; b: $1,000 − $2,628 = −$1,628
    assert f"${1000 - per_request * 1_000_000:,.2f}" in result.output and "-$1,628.00" in result.output
    # break-even: 2628 / (47/3 / 1M) = 167,744,680.85 requests (168M); 167.7M × 17/3 tokens fits one instance
    assert "168M" in result.output
    with open(traced / "out.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["model"], r["requests_per_month"]) for r in rows] == [("a", "1000"), ("a", "1000000"), ("b", "1000"), ("b", "1000000")]
    cent = Decimal("1e-12")  # Decimal division rounds at 28 digits
    assert Decimal(rows[1]["monthly_cost"]).quantize(cent) == (per_request * 1_000_000).quantize(cent)
    assert Decimal(rows[1]["margin"]).quantize(cent) == (1000 - per_request * 1_000_000).quantize(cent)
    assert rows[2]["monthly_cost"] == "2628.0" and rows[2]["instances"] == "1"
    svg = (traced / "out.svg").read_text()
    assert svg
    root = ET.fromstring(svg)
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2


def test_cli_unknown_price_and_default_models(traced: Path) -> None:
    result = invoke("--users", "5000", "--requests-per-user", "30", "--models", "c,a")
    assert result.exit_code == 0, result.output
    assert "unknown price" in result.output and "@150k/mo" in result.output
    assert "$0.000000" not in result.output and "add [models.c.price] to keel.toml" in result.output
    defaults = invoke("--traffic", "1k")
    assert defaults.exit_code == 0 and " c " not in defaults.output and " b " in defaults.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--traffic", "10X/month"], "'10X/month'"),
        (["--traffic", "1k", "--price-per-request", "-1"], "--price-per-request must be 0 or more"),
        (["--users", "-5", "--requests-per-user", "3"], "must both be more than 0"),
        (["--users", "5"], "go together"),
        ([], "Give the traffic"),
        (["--traffic", "1k", "--since", "yesterday"], "--since 'yesterday'"),
        (["--traffic", "1k", "--prompt", "nope"], "Run the prompt or an eval first"),
        (["--traffic", "1k", "--by", "tag"], "--by must be prompt or model"),
    ],
)
def test_cli_bad_input(traced: Path, args: list[str], message: str) -> None:
    result = invoke(*args)
    assert isinstance(result.exception, ConfigError) and message in str(result.exception)


def test_cli_unknown_model_lists_configured(traced: Path) -> None:
    result = invoke("--traffic", "1k", "--models", "a,zzz")
    assert isinstance(result.exception, UnknownModel)
    assert "a, b, c, local" in str(result.exception)
