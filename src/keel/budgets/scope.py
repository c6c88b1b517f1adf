"""Which bucket of a budget a call counts against: its scope value and its period.

    scope = "global"              every call                          bucket "global"
    scope = "key"                 per gateway key (tags["api_key"])   bucket "key=3fa2…"
    scope = "tenant"              per tenant (tags["tenant"])         bucket "tenant=acme"
    scope = "tag:feature"         per value of a tag                  bucket "feature=search"
    scope = "tag:feature=search"  only calls with that tag value      bucket "feature=search"
    scope = "prompt:summarize"    only calls of that prompt           bucket "prompt=summarize"

A call without the tag (or key, tenant, prompt) a budget is scoped by does not count against it.
Periods are UTC: a day is "2026-11-25", a month "2026-11", and "total" never ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import ConfigError
from ..pipeline import Call

#: How long a bucket's figures are kept after its period ends (for `keel budgets` to show).
KEEP_AFTER = timedelta(days=2)


@dataclass(frozen=True)
class Scope:
    #: "global", "tag" (key and tenant are the tags the gateway sets) or "prompt".
    kind: str
    name: str = ""
    #: Only this value of the tag counts (tag:NAME=VALUE); None: one bucket per value.
    value: str | None = None

    @classmethod
    def parse(cls, text: str, budget: str) -> "Scope":
        kind, _, rest = text.strip().partition(":")
        if kind == "global" and not rest:
            return cls("global")
        if kind == "key" and not rest:
            return cls("tag", "api_key")
        if kind == "tenant" and not rest:
            return cls("tag", "tenant")
        if kind == "tag" and rest:
            name, eq, value = rest.partition("=")
            if name.strip():
                return cls("tag", name.strip(), value.strip() if eq else None)
        if kind == "prompt" and rest.strip():
            return cls("prompt", rest.strip())
        raise ConfigError(
            f"Budget {budget!r} has scope {text!r}, which Keel does not know. Use one of: global, key, tenant, "
            "tag:NAME, tag:NAME=VALUE, prompt:NAME.",
            budget=budget,
            scope=text,
        )

    def bucket(self, call: Call) -> str | None:
        """The scope value this call counts under, or None when the budget does not apply."""
        if self.kind == "global":
            return "global"
        if self.kind == "prompt":
            ref = call.prompt
            return f"prompt={self.name}" if ref is not None and getattr(ref, "name", None) == self.name else None
        value = call.tags.get(self.name)
        if value is None or value == "":
            return None
        value = str(value)
        if self.value is not None and value != self.value:
            return None
        label = "key" if self.name == "api_key" else self.name
        return f"{label}={value}"


def period_of(period: str, now: datetime) -> tuple[str, float | None]:
    """The period's label at `now` (UTC) and when its figures may be forgotten (None: never)."""
    return _span(period, now)[0]


class Periods:
    """`period_of`, remembered until the period ends: the request path asks on every call."""

    def __init__(self) -> None:
        self._spans: dict[str, tuple[tuple[str, float | None], float, float]] = {}

    def __call__(self, period: str, now: float) -> tuple[str, float | None]:
        """`period_of(period, now)` for `now` in Unix time."""
        return self.span(period, now)[0]

    def span(self, period: str, now: float) -> tuple[tuple[str, float | None], float, float]:
        """(label, forget after), and the Unix times the period that holds `now` starts and ends."""
        span = self._spans.get(period)
        if span is None or not span[1] <= now < span[2]:
            span = self._spans[period] = _span(period, datetime.fromtimestamp(now, UTC))
        return span


def _span(period: str, now: datetime) -> tuple[tuple[str, float | None], float, float]:
    """(label, forget after), and the Unix times the period starts and ends."""
    now = now.astimezone(UTC)
    if period == "day":
        start = datetime(now.year, now.month, now.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        return (start.strftime("%Y-%m-%d"), (end + KEEP_AFTER).timestamp()), start.timestamp(), end.timestamp()
    if period == "month":
        start = datetime(now.year, now.month, 1, tzinfo=UTC)
        end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
        return (now.strftime("%Y-%m"), (end + KEEP_AFTER).timestamp()), start.timestamp(), end.timestamp()
    return ("total", None), float("-inf"), float("inf")
