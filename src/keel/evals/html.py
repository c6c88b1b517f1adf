"""A run as one self-contained HTML page: no external assets, charts drawn as inline SVG.

Charts (drawn in charts.py): pass rate per prompt × model cell (with its 95% interval), cost against
quality per cell with the Pareto front, and the distribution of latencies.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from .charts import cell_label, cost_quality_chart, format_ms, latency_chart, pass_rate_chart

_STYLE = """body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.fail{color:#b00}.ok{color:#070}
svg{background:#fafafa;border:1px solid #ddd;margin:0.5em 1em 0.5em 0;vertical-align:top}pre{white-space:pre-wrap;margin:0}"""


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


def _cell_table(cells: list[dict[str, Any]]) -> str:
    head = "<tr><th>prompt × model</th><th>pass rate</th><th>95% CI</th><th>consistency</th><th>pass@k / pass^k</th><th>tokens</th><th>cost</th><th>p50 ms</th></tr>"
    rows = []
    for c in cells:
        cost = c["cost"] if c["cost"] is not None else f"unknown ({c['cost_unknown']} answers)"
        rows.append(f"<tr><td>{escape(cell_label(c))}</td><td class='{'ok' if c['ok'] else 'fail'}'>{c['pass_rate']:.1%}</td>"
                    f"<td>{c['ci95'][0]:.2f}–{c['ci95'][1]:.2f}</td><td>{_consistency(c)}</td>"
                    f"<td>{c['pass_at_k']:.2f} / {c['pass_hat_k']:.2f} (k={c['k']})</td>"
                    f"<td>{c['prompt_tokens']}+{c['completion_tokens']}</td><td>{escape(str(cost))}</td>"
                    f"<td>{'–' if c['latency_p50_ms'] is None else format_ms(c['latency_p50_ms'])}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _consistency(cell: dict[str, Any]) -> str:
    semantic = cell.get("semantic_consistency")
    return f"{cell['consistency']:.2f}" + ("" if semantic is None else f" (semantic {semantic:.2f})")


def _results_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        problems = "; ".join(a["message"] for a in (r.get("assertions") or []) if not a["passed"]) or (r.get("error") or "")
        rows.append(f"<tr><td>{escape(r['case_id'])}</td><td>{escape(r['prompt'])} × {escape(r['model'])}</td><td>{r['repeat']}</td>"
                    f"<td class='{'ok' if r['passed'] else 'fail'}'>{r['score']:.2f}</td>"
                    f"<td><pre>{escape(str(r.get('output'))[:400])}</pre></td><td>{escape(problems)}</td></tr>")
    return "<table><tr><th>case</th><th>cell</th><th>repeat</th><th>score</th><th>output</th><th>problems</th></tr>" + "".join(rows) + "</table>"
