"""What a prompt would cost at other traffic levels and on other models, from measured traces.

Pure functions; `keel cost project` (cli/cost_project.py) only reads traces and prints.

Definitions (all per calendar month of 730 hours):

* token distributions: mean, p50 and p95 of prompt, completion and cached tokens over every call
  of a group; percentiles by nearest rank (the value at position ceil(p/100 × n) when sorted).
* cache-hit rate: share of calls whose trace notes say ``cache == "hit"``; hits cost nothing.
* API cost per request = (mean prompt − mean cached) × input + mean cached × cached input
  + mean completion × output, times (1 − cache-hit rate). Monthly cost = that × requests.
* self-hosted (priced per hour): one instance serves tps × 3600 × 730 tokens a month; a month of
  V requests needs ceil(V × tokens per request / that) instances (at least one), each costing
  per_hour × 730. Tokens per request = (mean prompt + mean completion) × (1 − cache-hit rate).
* break-even against an API model: the monthly volume where the API bill equals one instance,
  per_hour × 730 / API cost per request. None when one instance saturates first (the API is then
  cheaper at every volume) or the API costs nothing per request.

Unknown prices stay unknown (None), never 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from html import escape

from ..errors import ConfigError
from .pricing import Rate

HOURS_PER_MONTH = Decimal(730)
SUFFIXES = {"": Decimal(1), "k": Decimal(1_000), "m": Decimal(1_000_000), "b": Decimal(1_000_000_000)}
TRAFFIC_FORMS = "a number of requests per month with an optional k, M or B suffix, comma-separated: 1k,100k,10M (or 2.5M/month)"
_TRAFFIC = re.compile(r"(\d+(?:\.\d+)?)\s*([kmb]?)(?:\s*/\s*(?:month|mo))?", re.IGNORECASE)


# -- traffic ----------------------------------------------------------------------------------


def parse_traffic(text: str) -> list[Decimal]:
    """"1k,100k,10M" → [1000, 100000, 10000000] requests per month, sorted, without repeats."""
    levels: set[Decimal] = set()
    for part in text.split(","):
        match = _TRAFFIC.fullmatch(part.strip())
        if not match:
            raise ConfigError(f"Invalid traffic {part.strip()!r} in {text!r}: give {TRAFFIC_FORMS}.")
        value = Decimal(match.group(1)) * SUFFIXES[match.group(2).lower()]
        if value <= 0:
            raise ConfigError(f"Invalid traffic {part.strip()!r} in {text!r}: it must be more than 0 requests per month.")
        levels.add(value.normalize() if value != value.to_integral_value() else value.to_integral_value())
    return sorted(levels)


def format_volume(value: Decimal) -> str:
    for suffix, size in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if value >= size:
            return f"{(value / size).normalize():f}{suffix}"
    return f"{value.normalize():f}"


# -- measured usage ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    mean: Decimal
    p50: int
    p95: int


@dataclass(frozen=True)
class TokenStats:
    """What one group's calls looked like."""

    group: str
    calls: int
    prompt: Dist
    completion: Dist
    cached: Dist
    cache_hit_rate: Decimal
    #: share of the calls that reached a model, per "provider/upstream model"
    routing: dict[str, Decimal] = field(default_factory=dict)


def group_name(row: dict[str, Any], by: str) -> str:
    """The prompt's name (falling back to the model alias for plain calls), or the model alias."""
    if by == "prompt" and row.get("prompt_name"):
        return str(row["prompt_name"])
    return str(row.get("model") or "(none)")


def percentile(values: Sequence[int], p: int) -> int:
    """Nearest rank: the value at position ceil(p/100 × n) of the sorted values."""
    ordered = sorted(values)
    return ordered[max(math.ceil(p * len(ordered) / 100), 1) - 1]


def _dist(values: list[int]) -> Dist:
    return Dist(mean=Decimal(sum(values)) / len(values), p50=percentile(values, 50), p95=percentile(values, 95))


def token_stats(rows: Iterable[dict[str, Any]], by: str = "prompt") -> list[TokenStats]:
    """Per group, most calls first."""
    if by not in ("prompt", "model"):
        raise ConfigError(f"--by must be prompt or model, not {by!r}.")
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(group_name(row, by), []).append(row)
    stats = []
    for name, members in groups.items():
        hits = [(r.get("notes") or {}).get("cache") == "hit" for r in members]
        answered = [r for r, hit in zip(members, hits, strict=True) if not hit]
        routes: dict[str, int] = {}
        for row in answered:
            route = f"{row.get('provider') or '?'}/{row.get('upstream_model') or '?'}"
            routes[route] = routes.get(route, 0) + 1
        stats.append(
            TokenStats(
                group=name,
                calls=len(members),
                prompt=_dist([r.get("prompt_tokens") or 0 for r in members]),
                completion=_dist([r.get("completion_tokens") or 0 for r in members]),
                cached=_dist([r.get("cached_tokens") or 0 for r in members]),
                cache_hit_rate=Decimal(sum(hits)) / len(members),
                routing={k: Decimal(v) / len(answered) for k, v in sorted(routes.items(), key=lambda kv: -kv[1])},
            )
        )
    return sorted(stats, key=lambda s: (-s.calls, s.group))


# -- candidates and projections ---------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A model to project onto: priced per token (`rate`), per hour (`per_hour` + `tokens_per_second`),
    or unknown (neither; `note` says why)."""

    name: str
    rate: Rate | None = None
    per_hour: Decimal | None = None
    tokens_per_second: Decimal | None = None
    note: str = "unknown price"

    @property
    def self_hosted(self) -> bool:
        return self.per_hour is not None and self.tokens_per_second is not None


@dataclass(frozen=True)
class Projection:
    group: str
    model: str
    volume: Decimal
    per_request: Decimal | None  # None: unknown price
    monthly: Decimal | None
    instances: int | None = None  # self-hosted only
    revenue: Decimal | None = None
    margin: Decimal | None = None
    note: str = ""


def cost_per_request(stats: TokenStats, rate: Rate) -> Decimal:
    uncached = max(stats.prompt.mean - stats.cached.mean, Decimal(0))
    raw = uncached * rate.input + stats.cached.mean * rate.cached_input + stats.completion.mean * rate.output
    return raw * (1 - stats.cache_hit_rate)


def tokens_per_request(stats: TokenStats) -> Decimal:
    return (stats.prompt.mean + stats.completion.mean) * (1 - stats.cache_hit_rate)


def instances_needed(stats: TokenStats, candidate: Candidate, volume: Decimal) -> int:
    assert candidate.tokens_per_second is not None
    capacity = candidate.tokens_per_second * 3600 * HOURS_PER_MONTH
    return max(math.ceil(volume * tokens_per_request(stats) / capacity), 1)


def monthly_cost(stats: TokenStats, candidate: Candidate, volume: Decimal) -> tuple[Decimal | None, int | None]:
    """(cost per month, instances for self-hosted models); (None, None) when the price is unknown."""
    if candidate.self_hosted:
        assert candidate.per_hour is not None
        count = instances_needed(stats, candidate, volume)
        return count * candidate.per_hour * HOURS_PER_MONTH, count
    if candidate.rate is None:
        return None, None
    return cost_per_request(stats, candidate.rate) * volume, None


def project_costs(
    stats: TokenStats, candidates: Sequence[Candidate], volumes: Sequence[Decimal], price_per_request: Decimal | None = None
) -> list[Projection]:
    """One row per candidate and traffic level."""
    rows = []
    for candidate in candidates:
        for volume in volumes:
            monthly, count = monthly_cost(stats, candidate, volume)
            if monthly is None:
                per_request = None
            elif candidate.rate is not None and not candidate.self_hosted:
                per_request = cost_per_request(stats, candidate.rate)
            else:
                per_request = monthly / volume
            revenue = None if price_per_request is None else price_per_request * volume
            margin = None if revenue is None or monthly is None else revenue - monthly
            note = candidate.note if monthly is None else ""
            rows.append(Projection(stats.group, candidate.name, volume, per_request, monthly, count, revenue, margin, note))
    return rows


def break_even(stats: TokenStats, self_hosted: Candidate, api: Candidate) -> Decimal | None:
    """Requests per month at which `api` costs as much as one instance of `self_hosted` (see module doc)."""
    if not self_hosted.self_hosted or api.rate is None or api.self_hosted:
        return None
    assert self_hosted.per_hour is not None and self_hosted.tokens_per_second is not None
    per_request = cost_per_request(stats, api.rate)
    if per_request <= 0:
        return None
    volume = self_hosted.per_hour * HOURS_PER_MONTH / per_request
    if instances_needed(stats, self_hosted, volume) > 1:
        return None
    return volume


# -- chart ------------------------------------------------------------------------------------

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")


def cost_curves(
    stats: TokenStats, candidates: Sequence[Candidate], low: Decimal, high: Decimal, points: int = 60
) -> dict[str, list[tuple[float, float]]]:
    """Monthly cost at `points` log-spaced volumes per candidate with a known, non-zero cost."""
    lo, hi = math.log10(low), math.log10(high)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    volumes = [Decimal(repr(10 ** (lo + (hi - lo) * i / (points - 1)))) for i in range(points)]
    curves = {}
    for candidate in candidates:
        line = []
        for volume in volumes:
            monthly, _ = monthly_cost(stats, candidate, volume)
            if monthly is None or monthly <= 0:
                break
            line.append((float(volume), float(monthly)))
        else:
            curves[candidate.name] = line
    return curves


def render_svg(
    curves: dict[str, list[tuple[float, float]]],
    marks: Sequence[tuple[str, float, float]] = (),
    title: str = "Monthly cost by traffic",
    width: int = 800,
    height: int = 500,
) -> str:
    """A log-log chart: one <polyline> per curve, a circle per mark (label, volume, cost), axes with labels."""
    left, right, top, bottom = 90, 190, 40, 60
    xs = [x for line in curves.values() for x, _ in line] + [m[1] for m in marks]
    ys = [y for line in curves.values() for _, y in line] + [m[2] for m in marks]
    x0, x1 = _decades(xs)
    y0, y1 = _decades(ys)
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (math.log10(x) - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (math.log10(y) - y0) / (y1 - y0) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
    ]
    for d in range(x0, x1 + 1):
        x = px(10.0**d)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{format_volume(Decimal(10) ** d)}</text>')
    for d in range(y0, y1 + 1):
        y = py(10.0**d)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">${_tick(d)}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 14}" text-anchor="middle">requests per month (log scale)</text>')
    out.append(f'<text transform="translate(18 {top + plot_h / 2}) rotate(-90)" text-anchor="middle">monthly cost, $ (log scale)</text>')
    for i, (name, line) in enumerate(curves.items()):
        color = COLORS[i % len(COLORS)]
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in line)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"><title>{escape(name)}</title></polyline>')
        ly = top + 10 + i * 18
        out.append(f'<rect x="{width - right + 14}" y="{ly - 9}" width="14" height="4" fill="{color}"/>')
        out.append(f'<text x="{width - right + 34}" y="{ly - 3}">{escape(name)}</text>')
    for label, x, y in marks:
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="5" fill="none" stroke="black" stroke-width="2"><title>{escape(label)}</title></circle>')
    if marks:
        ly = top + 10 + len(curves) * 18
        out.append(f'<circle cx="{width - right + 21}" cy="{ly - 7}" r="5" fill="none" stroke="black" stroke-width="2"/>')
        out.append(f'<text x="{width - right + 34}" y="{ly - 3}">break-even</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _decades(values: list[float]) -> tuple[int, int]:
    if not values:
        return 0, 1
    lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    return lo, max(hi, lo + 1)


def _tick(decade: int) -> str:
    return f"{10.0**decade:g}" if decade < 0 else format_volume(Decimal(10) ** decade)
