"""`keel cost report --format html`: the groups as one self-contained page, a bar chart of known
cost per group (inline SVG, no script, no external resource) above the table.

A group whose every call had no price gets no bar and the label "unknown"; one with some unpriced
calls gets its known part as the bar and says how many calls are not in it.
"""

from __future__ import annotations

from html import escape

from .report import Group

BAR_COLOUR = "#36c"
_STYLE = ("body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
          "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}svg{background:#fafafa;border:1px solid #ddd}")


def report_page(by: list[str], groups: list[Group], title: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{_STYLE}</style>"
            f"</head><body><h1>{escape(title)}</h1>{cost_chart(groups)}{_table(by, groups)}</body></html>")


def cost_chart(groups: list[Group], *, limit: int = 40) -> str:
    """One horizontal bar per group (the largest `limit`), its length the group's known cost."""
    shown = groups[:limit]
    left, span, row = 230, 420, 24
    height = 40 + row * len(shown) + 10
    top = max((g.known_cost for g in shown if g.unknown_cost_calls < g.calls), default=0) or 1
    items = [f"<text x='10' y='20' font-size='13'>known cost per group{' (largest ' + str(limit) + ')' if len(groups) > limit else ''}</text>"]
    for i, group in enumerate(shown):
        y, label = 36 + row * i, " / ".join(group.key)
        items.append(f"<text x='10' y='{y + 14}' font-size='11'>{escape(label[:34])}</text>")
        if group.unknown_cost_calls == group.calls:
            items.append(f"<text x='{left}' y='{y + 14}' font-size='11' fill='#b00'>unknown</text>")
            continue
        width = float(group.known_cost / top) * span
        items.append(f"<rect class='bar' x='{left}' y='{y}' width='{width:.1f}' height='18' fill='{BAR_COLOUR}'>"
                     f"<title>{escape(label)}: {escape(group.cost_text)}</title></rect>"
                     f"<text x='{left + width + 6:.1f}' y='{y + 14}' font-size='11'>{escape(group.cost_text)}</text>")
    return (f"<svg id='chart-cost' xmlns='http://www.w3.org/2000/svg' width='{left + span + 170}' height='{height}' "
            f"role='img'>{''.join(items)}</svg>")


def _table(by: list[str], groups: list[Group]) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name in [*by, "calls", "tokens in", "tokens out", "cached", "cost"])
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in [*g.key, g.calls, g.prompt_tokens, g.completion_tokens,
                                                              g.cached_tokens, g.cost_text]) + "</tr>"
        for g in groups
    )
    return f"<table><tr>{head}</tr>{rows}</table>"
