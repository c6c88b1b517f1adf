"""Where the money went: traced calls grouped by model, provider, prompt, status, tag, day, week
or month (UTC days, ISO weeks, as budget periods are).

The database does the grouping and the sums (`Store.cost_totals`); this module checks what to
group by and presents the groups. Unknown costs stay unknown: a group's known total is shown next
to how many calls had no price, never summed as zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..store import Store

PLAIN_KEYS = ("model", "provider", "prompt", "status", "day", "week", "month")
NONE = "(none)"


@dataclass
class Group:
    key: tuple[str, ...]
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    known_cost: Decimal = field(default_factory=Decimal)
    unknown_cost_calls: int = 0

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
            "cost_known": plain(self.known_cost) if self.unknown_cost_calls < self.calls else None,
            "calls_with_unknown_cost": self.unknown_cost_calls,
        }


def cost_report(
    store: Store, by: list[str], since: float | None = None, tags: Mapping[str, str] | None = None
) -> list[Group]:
    """Totals per group of the calls started since `since` that carry `tags` (key=value), largest
    known cost first. Raises ConfigError for an unknown dimension or a tag no call in range carries."""
    check_keys(by)
    rows = store.cost_totals(by, since=since, tags=tags)
    for at, name in enumerate(by):
        if name.startswith("tag:") and all(row["key"][at] is None for row in rows):
            seen = ", ".join(store.trace_tag_names(since=since, tags=tags)) or "none recorded yet"
            raise ConfigError(f"Unknown tag {name[4:]!r}: no call in range carries it. Tags seen: {seen}.")
    groups = [
        Group(
            key=tuple(NONE if value is None else value for value in row["key"]),
            calls=row["calls"],
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            cached_tokens=row["cached_tokens"],
            known_cost=row["cost"] if row["cost"] is not None else Decimal(0),
            unknown_cost_calls=row["unknown_cost_calls"],
        )
        for row in rows
    ]
    return sorted(groups, key=lambda g: (-g.known_cost, -g.calls, g.key))


def check_keys(by: list[str]) -> None:
    for name in by:
        if name not in PLAIN_KEYS and not (name.startswith("tag:") and name[4:]):
            raise ConfigError(f"Cannot group by {name!r}. Use one of {', '.join(PLAIN_KEYS)} or tag:NAME.")


def plain(amount: Decimal) -> str:
    """The amount as a plain decimal, every digit kept, no exponent, no trailing zeros: 0.00000015."""
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
