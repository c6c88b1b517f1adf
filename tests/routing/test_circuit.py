"""CircuitBreakerStage: a failing upstream stops being called, then gets exactly one probe."""

from __future__ import annotations

import asyncio
from pathlib import Path

from upstreams import Fault

from keel.errors import InvalidRequest, ProviderTimeout, ServerError
from keel.routing import CircuitOpen

from .conftest import Routed, Upstreams, configure, run

COOLDOWN = 0.3


def test_the_circuit_opens_then_lets_one_probe_through(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.ERROR, times=100, status=503)
    settings = configure(project, ups, retries=0, circuit_failures=3, circuit_window=30, circuit_cooldown=COOLDOWN)

    async def scenario(routed: Routed) -> None:
        failed = [await routed.complete() for _ in range(3)]
        assert all(isinstance(o.error, ServerError) for o in failed) and ups.up.count == 3
        refused = [await routed.complete() for _ in range(3)]
        assert all(isinstance(o.error, CircuitOpen) for o in refused) and ups.up.count == 3
        assert "circuit open for up/gpt-4o-mini after 3 failures within 30s; next probe in" in str(refused[0].error)
        assert routed.breakers.states() == {"up/gpt-4o-mini": "open"}

        await asyncio.sleep(COOLDOWN)
        probe, *others = await asyncio.gather(*(routed.complete() for _ in range(4)))
        assert isinstance(probe.error, ServerError) and ups.up.count == 4  # exactly one probe, which failed
        assert all(isinstance(o.error, CircuitOpen) for o in others)
        reopened = await routed.complete()
        assert "after its probe failed" in str(reopened.error) and ups.up.count == 4

        ups.up.reset()  # the upstream recovers
        await asyncio.sleep(COOLDOWN)
        probe, *others = await asyncio.gather(*(routed.complete() for _ in range(4)))
        assert probe.error is None and ups.up.count == 1
        assert all("a probe request is in flight" in str(o.error) for o in others)
        assert routed.breakers.states() == {"up/gpt-4o-mini": "closed"}
        after = [await routed.complete() for _ in range(3)]
        assert all(o.error is None for o in after) and ups.up.count == 4

    run(settings, scenario)


def test_a_circuit_open_error_is_not_retried(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.ERROR, times=100, status=500)
    settings = configure(project, ups, retries=5, circuit_failures=2, circuit_cooldown=30)
    outcome = run(settings, lambda routed: routed.complete())
    assert isinstance(outcome.error, CircuitOpen) and ups.up.count == 2
    assert [a["error_class"] for a in outcome.attempts] == ["ServerError", "ServerError", "CircuitOpen"]
    assert outcome.attempts[-1]["decision"] == "stop: not retryable"


def test_rejected_requests_do_not_open_the_circuit(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.ERROR, times=5, status=400)
    settings = configure(project, ups, retries=0, circuit_failures=2)

    async def scenario(routed: Routed) -> None:
        outcomes = [await routed.complete() for _ in range(5)]
        assert all(isinstance(o.error, InvalidRequest) for o in outcomes) and ups.up.count == 5
        assert routed.breakers.states() == {"up/gpt-4o-mini": "closed"}

    run(settings, scenario)


def test_attempt_timeouts_count_as_failures(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.HANG, times=5)
    settings = configure(project, ups, retries=0, attempt_timeout=0.1, circuit_failures=2, circuit_cooldown=30)

    async def scenario(routed: Routed) -> None:
        outcomes = [await routed.complete() for _ in range(3)]
        assert [type(o.error) for o in outcomes] == [ProviderTimeout, ProviderTimeout, CircuitOpen]
        assert ups.up.count == 2

    run(settings, scenario)


def test_an_open_circuit_falls_back_without_calling_the_upstream(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.ERROR, times=100, status=503)
    settings = configure(project, ups, fallbacks=["secondary"], retries=0, circuit_failures=1, circuit_cooldown=30)

    async def scenario(routed: Routed) -> None:
        first, second = await routed.complete(), await routed.complete()
        assert first.call.notes["fallback_failures"][0]["error_class"] == "ServerError"
        assert second.call.notes["fallback_failures"][0]["error_class"] == "CircuitOpen"
        assert second.error is None and second.call.notes["answered_by"] == "secondary"
        assert ups.up.count == 1 and ups.claude.count == 2

    run(settings, scenario)


def test_a_stream_cut_mid_way_counts_as_a_failure(project: Path, ups: Upstreams) -> None:
    ups.up.reply = "one two three four five six seven"
    ups.up.script(Fault.STREAM_CUT, times=2)
    settings = configure(project, ups, retries=0, circuit_failures=2, circuit_cooldown=30)

    async def scenario(routed: Routed) -> None:
        outcomes = [await routed.stream() for _ in range(3)]
        assert [bool(o.chunks) for o in outcomes] == [True, True, False]
        assert isinstance(outcomes[-1].error, CircuitOpen) and ups.up.count == 2

    run(settings, scenario)
