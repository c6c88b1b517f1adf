"""Where the money went: trace records grouped by model, prompt, tag, day, week or month.

Unknown costs stay unknown: a group's known total is shown next to how many calls had no price,
never summed as zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..errors import ConfigError

PLAIN_KEYS = ("model", "provider", "prompt", "status", "day", "week", "month")


@dataclass
class Group:
    key: tuple[str, ...]
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    known_cost: Decimal = field(default_factory=Decimal)
    unknown_cost_calls: int = 0

    def add(self, row: dict[str, Any]) -> None:
        self.calls += 1
        self.prompt_tokens += row.get("prompt_tokens") or 0
        self.completion_tokens += row.get("completion_tokens") or 0
        self.cached_tokens += row.get("cached_tokens") or 0
        if row.get("cost") is None:
            self.unknown_cost_calls += 1
        else:
            self.known_cost += Decimal(row["cost"])

    @property
    def cost_text(self) -> str:
        if self.unknown_cost_calls == self.calls:
            return "unknown"
        known = f"${self.known_cost:.6f}"
        return known if not self.unknown_cost_calls else f"{known} + {self.unknown_cost_calls} unknown"

    def as_dict(self, keys: list[str]) -> dict[str, Any]:
        return {
            **dict(zip(keys, self.key, strict=True)),
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_known": str(self.known_cost) if self.unknown_cost_calls < self.calls else None,
            "calls_with_unknown_cost": self.unknown_cost_calls,
        }


def group_traces(rows: Iterable[dict[str, Any]], by: list[str], tags: dict[str, str] | None = None) -> list[Group]:
    """Totals per group, largest known cost first. `tags` filters rows to those carrying them."""
    rows = [r for r in rows if _has_tags(r, tags or {})]
    check_keys(by, rows)
    groups: dict[tuple[str, ...], Group] = {}
    for row in rows:
        key = tuple(_value(row, name) for name in by)
        groups.setdefault(key, Group(key)).add(row)
    return sorted(groups.values(), key=lambda g: (-g.known_cost, -g.calls, g.key))


def check_keys(by: list[str], rows: list[dict[str, Any]]) -> None:
    seen = sorted({k for r in rows for k in (r.get("tags") or {})})
    for name in by:
        if name in PLAIN_KEYS:
            continue
        if not name.startswith("tag:"):
            raise ConfigError(f"Cannot group by {name!r}. Use one of {', '.join(PLAIN_KEYS)} or tag:NAME.")
        if name[4:] not in seen:
            listing = ", ".join(seen) or "none recorded yet"
            raise ConfigError(f"Unknown tag {name[4:]!r}: no call in range carries it. Tags seen: {listing}.")


def _value(row: dict[str, Any], name: str) -> str:
    if name.startswith("tag:"):
        return str((row.get("tags") or {}).get(name[4:], "(none)"))
    if name == "prompt":
        prompt = row.get("prompt_name")
        return f"{prompt}@{(row.get('prompt_version') or '')[:8]}" if prompt else "(none)"
    if name in ("day", "week", "month"):
        when = datetime.fromtimestamp(row["started_at"])
        return {"day": when.strftime("%Y-%m-%d"), "week": when.strftime("%G-W%V"), "month": when.strftime("%Y-%m")}[name]
    return str(row.get(name) or "(none)")


def _has_tags(row: dict[str, Any], wanted: dict[str, str]) -> bool:
    tags = row.get("tags") or {}
    return all(str(tags.get(k)) == v for k, v in wanted.items())
