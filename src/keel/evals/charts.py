"""The HTML report's charts as inline SVG strings: no script, no external resource, readable offline.

Each mark has a class (`bar`, `point`, `bucket`) and a `<title>` with its exact figure, so the
charts can be checked (and read by a screen reader) without measuring pixels.
"""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Any

from .pareto import cost_per_thousand, pareto_front

PASS_COLOUR, FAIL_COLOUR, POINT_COLOUR, FRONT_COLOUR, BUCKET_COLOUR = "#3a3", "#c33", "#36c", "#f90", "#96c"
_AXIS, _GRID = "#888", "#e4e4e4"


def pass_rate_chart(cells: list[dict[str, Any]]) -> str:
    """One horizontal bar per cell (green when it met its thresholds, red when not) on a 0–100%
    track, with its 95% interval as a whisker."""
    left, span, row = 150, 260, 28
    height = 34 + row * len(cells) + 18
    items = [_text(10, 18, "pass rate per cell, with its 95% interval", 13)]
    for i, cell in enumerate(cells):
        y = 34 + row * i
        rate, (low, high) = cell["pass_rate"], cell["ci95"]
        x_low, x_high = left + span * low, left + span * high
        items.append(
            _text(10, y + 15, _short(cell_label(cell), 22), 11) +
            f"<rect x='{left}' y='{y}' width='{span}' height='22' fill='{_GRID}'/>"
            f"<rect class='bar' x='{left}' y='{y}' width='{span * rate:.1f}' height='22' "
            f"fill='{PASS_COLOUR if cell['ok'] else FAIL_COLOUR}'><title>{escape(cell_label(cell))}: {rate:.1%} "
            f"(95% interval {low:.0%}–{high:.0%})</title></rect>"
            f"<path d='M{x_low:.1f} {y + 6}v10M{x_low:.1f} {y + 11}H{x_high:.1f}M{x_high:.1f} {y + 6}v10' stroke='#000' fill='none'/>"
            f"<text x='{left + span + 8}' y='{y + 15}' font-size='11'>{rate:.0%}</text>")
    axis = height - 6
    items.extend(_text(left + span * f, axis, f"{f:.0%}", 10, "middle") for f in (0, 0.5, 1))
    return _svg("pass-rate", 470, height, items)


def cost_quality_chart(cells: list[dict[str, Any]]) -> str:
    """Each cell's pass rate against its cost per 1,000 requests; the Pareto front (nothing both
    cheaper and better) joined by a dashed line. A cell of unknown cost is drawn hollow on the
    y axis, never as free."""
    left, right, top, bottom = 60, 400, 34, 214
    costs = {_key(c): cost_per_thousand(c) for c in cells}
    most = max((v for v in costs.values() if v is not None), default=Decimal(0)) or Decimal(1)
    front = pareto_front(cells)

    def at(cell: dict[str, Any]) -> tuple[float, float]:
        cost = costs[_key(cell)]
        x = left if cost is None else left + (right - left) * float(cost / most)
        return x, bottom - (bottom - top) * cell["pass_rate"]

    items = [_text(10, 18, "pass rate (y) against cost per 1,000 requests (x)", 13)]
    for f in (0, 0.5, 1):
        y = bottom - (bottom - top) * f
        items.append(f"<line x1='{left}' x2='{right}' y1='{y:.1f}' y2='{y:.1f}' stroke='{_GRID}'/>"
                     + _text(left - 6, y + 4, f"{f:.0%}", 10, "end"))
    items.append(f"<path d='M{left} {top}V{bottom}H{right}' stroke='{_AXIS}' fill='none'/>"
                 + _text(left, bottom + 16, "$0", 10, "middle") + _text(right, bottom + 16, f"${_money(most)}", 10, "end"))
    on_front = sorted((at(c) for c in cells if _key(c) in front), key=lambda p: p[0])
    if len(on_front) > 1:
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in on_front)
        items.append(f"<polyline points='{line}' fill='none' stroke='{FRONT_COLOUR}' stroke-width='2' stroke-dasharray='5 3'/>")
    for cell in cells:
        x, y = at(cell)
        cost = costs[_key(cell)]
        if cost is None:
            items.append(f"<circle class='point unknown' cx='{x:.1f}' cy='{y:.1f}' r='5' fill='none' stroke='{FAIL_COLOUR}'>"
                         f"<title>{escape(cell_label(cell))}: cost unknown</title></circle>")
        else:
            ring = f" stroke='{FRONT_COLOUR}' stroke-width='2'" if _key(cell) in front else ""
            items.append(f"<circle class='point' cx='{x:.1f}' cy='{y:.1f}' r='5' fill='{POINT_COLOUR}'{ring}>"
                         f"<title>{escape(cell_label(cell))}: {cell['pass_rate']:.1%} at ${_money(cost)} per 1,000 requests</title></circle>")
        items.append(_text(min(x + 8, right - 90), y - 7, _short(cell_label(cell), 18), 10))
    items.append(f"<circle cx='{right - 160}' cy='{bottom + 32}' r='5' fill='none' stroke='{FRONT_COLOUR}' stroke-width='2'/>"
                 f"<line x1='{right - 150}' x2='{right - 130}' y1='{bottom + 32}' y2='{bottom + 32}' stroke='{FRONT_COLOUR}' "
                 f"stroke-width='2' stroke-dasharray='5 3'/>" + _text(right - 125, bottom + 36, "Pareto front", 10))
    return _svg("cost-quality", 440, 256, items)


def latency_chart(latencies: list[float], buckets: int = 10) -> str:
    """A histogram of every answer's latency in `buckets` equal slices from the fastest to the slowest."""
    left, bottom, tallest_px, step = 50, 214, 170, 34
    items = [_text(10, 18, f"latency distribution of {len(latencies)} answers (ms)", 13)]
    if not latencies:
        items.append(_text(left, 120, "no latencies recorded", 12))
        return _svg("latency", 440, 240, items)
    low, high = min(latencies), max(latencies)
    width = (high - low) / buckets or 1.0
    counts = [0] * buckets
    for value in latencies:
        counts[min(buckets - 1, int((value - low) / width))] += 1
    tallest = max(counts)
    for i, count in enumerate(counts):
        if count:
            h = tallest_px * count / tallest
            start = low + i * width
            items.append(f"<rect class='bucket' x='{left + step * i + 2}' y='{bottom - h:.1f}' width='{step - 4}' "
                         f"height='{h:.1f}' fill='{BUCKET_COLOUR}'><title>{count} answers between {format_ms(start)} and "
                         f"{format_ms(start + width)} ms</title></rect>")
    items.append(f"<path d='M{left} {bottom - tallest_px}V{bottom}H{left + step * buckets}' stroke='{_AXIS}' fill='none'/>"
                 + _text(left - 6, bottom - tallest_px + 4, str(tallest), 10, "end") + _text(left - 6, bottom + 4, "0", 10, "end")
                 + _text(left, bottom + 16, format_ms(low), 10) + _text(left + step * buckets, bottom + 16, format_ms(high), 10, "end"))
    return _svg("latency", 440, 240, items)


def _svg(name: str, width: int, height: int, items: list[str]) -> str:
    body = "".join(items)
    return (f"<svg class='chart-{name}' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}'>{body}</svg>")


def _text(x: float, y: float, text: str, size: int, anchor: str = "start") -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}'>{escape(text)}</text>"


def cell_label(cell: dict[str, Any]) -> str:
    """'prompt × model', as every report names a cell."""
    return f"{cell['prompt']} × {cell['model']}"


def _key(cell: dict[str, Any]) -> tuple[str, str]:
    return cell["prompt"], cell["model"]


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _money(value: Decimal) -> str:
    return f"{float(value):.3g}"


def format_ms(value: float) -> str:
    """Three significant figures below a second (sub-millisecond fakes stay readable), whole ms above."""
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"
