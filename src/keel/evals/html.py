"""A run as one self-contained HTML page: no external assets, charts drawn as inline SVG.

Charts: pass rate per prompt × model cell (with its 95% interval), cost against quality per cell,
and the distribution of latencies.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

_STYLE = """body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.fail{color:#b00}.ok{color:#070}
svg{background:#fafafa;border:1px solid #ddd;margin:0.5em 1em 0.5em 0}pre{white-space:pre-wrap;margin:0}"""


def html_report(run: dict[str, Any], results: list[dict[str, Any]]) -> str:
    summary = run.get("summary") or {"cells": [], "passed": False, "failures": []}
    cells = summary["cells"]
    verdict = '<b class="ok">PASSED</b>' if summary["passed"] else '<b class="fail">FAILED</b>'
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>eval {escape(run['suite'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{escape(run['suite'])} — run {escape(run['id'][:12])}</h1><p>{verdict} · status {escape(run['status'])}</p>",
        "".join(f"<p class='fail'>{escape(f)}</p>" for f in summary["failures"]),
        _cell_table(cells),
        "<h2>Charts</h2>", pass_rate_chart(cells), cost_quality_chart(cells),
        latency_chart([float(r["latency_ms"]) for r in results if r.get("latency_ms") is not None]),
        "<h2>Answers</h2>", _results_table(results), "</body></html>",
    ]
    return "".join(parts)


def write_html(path: Path, run: dict[str, Any], results: list[dict[str, Any]]) -> None:
    path.write_text(html_report(run, results), encoding="utf-8")


def pass_rate_chart(cells: list[dict[str, Any]]) -> str:
    width, bar, height = 420, 22, 30 + 28 * len(cells)
    rows = ["<text x='10' y='18' font-size='13'>pass rate per cell (95% interval)</text>"]
    for i, cell in enumerate(cells):
        y = 30 + 28 * i
        w = 260 * cell["pass_rate"]
        low, high = cell["ci95"]
        colour = "#3a3" if cell["ok"] else "#c33"
        rows.append(f"<text x='10' y='{y + 15}' font-size='11'>{escape(_label(cell))[:20]}</text>"
                    f"<rect x='150' y='{y}' width='{w:.1f}' height='{bar}' fill='{colour}'/>"
                    f"<line x1='{150 + 260 * low:.1f}' x2='{150 + 260 * high:.1f}' y1='{y + 11}' y2='{y + 11}' stroke='#000'/>"
                    f"<text x='{155 + w:.1f}' y='{y + 15}' font-size='11'>{cell['pass_rate']:.0%}</text>")
    return _svg("pass-rate", width, height, rows)


def cost_quality_chart(cells: list[dict[str, Any]]) -> str:
    width, height = 360, 240
    known = [float(c["cost"]) for c in cells if c.get("cost") is not None]
    top = max(known, default=0.0) or 1.0
    items = ["<text x='10' y='18' font-size='13'>cost (x) vs pass rate (y)</text>",
             "<line x1='40' y1='210' x2='340' y2='210' stroke='#888'/><line x1='40' y1='30' x2='40' y2='210' stroke='#888'/>"]
    for cell in cells:
        y = 210 - 180 * cell["pass_rate"]
        if cell.get("cost") is None:  # unknown cost: drawn hollow on the y axis, never as 0
            items.append(f"<circle cx='40' cy='{y:.1f}' r='5' fill='none' stroke='#c33'><title>{escape(_label(cell))}: cost unknown</title></circle>")
            continue
        x = 40 + 300 * float(cell["cost"]) / top
        items.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='5' fill='#36c'><title>{escape(_label(cell))}: {cell['cost']}</title></circle>")
    return _svg("cost-quality", width, height, items)


def latency_chart(latencies: list[float], buckets: int = 10) -> str:
    width, height = 360, 240
    items = ["<text x='10' y='18' font-size='13'>latency distribution (ms)</text>"]
    if latencies:
        low, high = min(latencies), max(latencies)
        span = (high - low) or 1.0
        counts = [0] * buckets
        for value in latencies:
            counts[min(buckets - 1, int((value - low) / span * buckets))] += 1
        tallest = max(counts)
        for i, count in enumerate(counts):
            h = 170 * count / tallest
            items.append(f"<rect x='{40 + 30 * i}' y='{210 - h:.1f}' width='26' height='{h:.1f}' fill='#96c'><title>{count}</title></rect>")
        items.append(f"<text x='40' y='228' font-size='11'>{low:.0f}</text><text x='300' y='228' font-size='11'>{high:.0f}</text>")
    return _svg("latency", width, height, items)


def _svg(name: str, width: int, height: int, items: list[str]) -> str:
    body = "".join(items)
    return f"<svg class='chart-{name}' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'>{body}</svg>"


def _label(cell: dict[str, Any]) -> str:
    return f"{cell['prompt']} × {cell['model']}"


def _cell_table(cells: list[dict[str, Any]]) -> str:
    head = "<tr><th>prompt × model</th><th>pass rate</th><th>95% CI</th><th>consistency</th><th>pass@k / pass^k</th><th>tokens</th><th>cost</th><th>p50 ms</th></tr>"
    rows = []
    for c in cells:
        cost = c["cost"] if c["cost"] is not None else f"unknown ({c['cost_unknown']} answers)"
        rows.append(f"<tr><td>{escape(_label(c))}</td><td class='{'ok' if c['ok'] else 'fail'}'>{c['pass_rate']:.1%}</td>"
                    f"<td>{c['ci95'][0]:.2f}–{c['ci95'][1]:.2f}</td><td>{c['consistency']:.2f}</td>"
                    f"<td>{c['pass_at_k']:.2f} / {c['pass_hat_k']:.2f} (k={c['k']})</td>"
                    f"<td>{c['prompt_tokens']}+{c['completion_tokens']}</td><td>{escape(str(cost))}</td>"
                    f"<td>{(c['latency_p50_ms'] or 0):.0f}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _results_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        problems = "; ".join(a["message"] for a in (r.get("assertions") or []) if not a["passed"]) or (r.get("error") or "")
        rows.append(f"<tr><td>{escape(r['case_id'])}</td><td>{escape(r['prompt'])} × {escape(r['model'])}</td><td>{r['repeat']}</td>"
                    f"<td class='{'ok' if r['passed'] else 'fail'}'>{r['score']:.2f}</td>"
                    f"<td><pre>{escape(str(r.get('output'))[:400])}</pre></td><td>{escape(problems)}</td></tr>")
    return "<table><tr><th>case</th><th>cell</th><th>repeat</th><th>score</th><th>output</th><th>problems</th></tr>" + "".join(rows) + "</table>"
