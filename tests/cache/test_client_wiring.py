"""The cache as `keel.Client` wires it: hits traced with cost 0 and the note "hit"."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path


import keel


from testenv import PRICED, stored_traces


def records(client: keel.Client) -> list[dict]:
    return sorted(stored_traces(client), key=lambda record: record["started_at"])


def test_a_hit_is_traced_at_zero_cost(project: Path) -> None:
    (project / "keel.toml").write_text(PRICED)
    with keel.Client() as client:
        paid, free = (client.complete("three little words", temperature=0) for _ in range(2))
        streamed = list(client.stream("three little words", temperature=0))
        traces = records(client)
        assert len(client.provider("fake").history) == 1
    # 3 prompt words × $2/M + 4 completion words × $10/M
    assert paid.cost.amount == Decimal("0.000046") and free.content == paid.content
    assert free.cost.amount == 0 and free.cost.source == "cache hit"
    assert "".join(chunk.text for chunk in streamed) == paid.content
    assert [t["notes"]["cache"] for t in traces] == ["miss", "hit", "hit"]
    assert [Decimal(t["cost"]) for t in traces] == [Decimal("0.000046"), 0, 0]
    assert [t["completion_tokens"] for t in traces] == [4, 4, 4]  # the usage as it was stored


def test_a_non_deterministic_call_is_not_cached_and_has_no_note(project: Path) -> None:
    (project / "keel.toml").write_text(PRICED)
    with keel.Client() as client:
        client.complete("x", temperature=0.5)
        client.complete("x", temperature=0.5)
        traces = records(client)
        assert len(client.provider("fake").history) == 2
    assert ["cache" in (t["notes"] or {}) for t in traces] == [False, False]


def test_the_cache_can_be_turned_off(project: Path) -> None:
    (project / "keel.toml").write_text(PRICED + "\n[cache]\nenabled = false\n")
    with keel.Client() as client:
        client.complete("x", temperature=0)
        client.complete("x", temperature=0)
        assert len(client.provider("fake").history) == 2
