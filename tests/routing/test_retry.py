"""RetryStage (and the attempt timeout) against real upstreams that fail on cue."""

from __future__ import annotations

from pathlib import Path

import pytest
from upstreams import Fault

from keel.errors import (
    AuthenticationFailed, InvalidRequest, ProviderTimeout, RateLimited, ServerError, UnexpectedResponse,
)

from .conftest import Routed, Upstreams, configure, run


def complete(routed: Routed):
    return routed.complete()


def stream(routed: Routed):
    return routed.stream()


def test_rate_limit_waits_retry_after_then_succeeds(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.RATE_LIMIT, times=1, retry_after=1)
    outcome = run(configure(project, ups, retries=2), complete)
    assert outcome.error is None and outcome.text == "Echo: hi"
    assert ups.up.count == 2
    first, second = outcome.attempts
    assert first["error_class"] == "RateLimited" and first["status"] == 429 and first["decision"] == "retry"
    assert first["delay"] >= 1
    assert second["decision"] == "ok" and second["error_class"] is None
    assert second["provider"] == "up" and second["model"] == "primary" and second["upstream_model"] == "gpt-4o-mini"


@pytest.mark.parametrize("status", [500, 503])
def test_a_burst_of_server_errors_is_retried(project: Path, ups: Upstreams, status: int) -> None:
    ups.up.script(Fault.ERROR, times=2, status=status)
    outcome = run(configure(project, ups, retries=2), complete)
    assert outcome.error is None and outcome.text == "Echo: hi"
    assert ups.up.count == 3
    assert [a["decision"] for a in outcome.attempts] == ["retry", "retry", "ok"]
    assert all(0 <= a["delay"] <= 0.05 for a in outcome.attempts[:2])


def test_retries_run_out(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.ERROR, times=3, status=500)
    outcome = run(configure(project, ups, retries=2), complete)
    assert isinstance(outcome.error, ServerError)
    assert ups.up.count == 3
    assert [a["error_class"] for a in outcome.attempts] == ["ServerError"] * 3
    assert outcome.attempts[-1]["decision"] == "stop: all 2 retries used"
    assert outcome.attempts[-1]["delay"] is None


@pytest.mark.parametrize(("status", "error"), [(400, InvalidRequest), (401, AuthenticationFailed)])
def test_a_rejected_request_is_not_retried(project: Path, ups: Upstreams, status: int, error: type) -> None:
    ups.up.script(Fault.ERROR, times=3, status=status)
    outcome = run(configure(project, ups, retries=2), complete)
    assert isinstance(outcome.error, error)
    assert ups.up.count == 1
    assert [a["decision"] for a in outcome.attempts] == ["stop: not retryable"]


def test_malformed_json_is_retried(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.MALFORMED_JSON)
    outcome = run(configure(project, ups, retries=1), complete)
    assert outcome.error is None and ups.up.count == 2
    assert outcome.attempts[0]["error_class"] == "UnexpectedResponse"


def test_a_hanging_upstream_is_cut_by_the_attempt_timeout(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.HANG, times=2)
    outcome = run(configure(project, ups, retries=2, attempt_timeout=0.2), complete)
    assert outcome.error is None and outcome.text == "Echo: hi"
    assert ups.up.count == 3
    timeouts = outcome.attempts[:2]
    assert [a["error_class"] for a in timeouts] == ["ProviderTimeout"] * 2
    assert all("attempt_timeout" in a["error"] for a in timeouts)
    assert all(a["end"] - a["start"] >= 0.2 for a in timeouts)


def test_the_deadline_stops_retries_early(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.ERROR, times=20, status=500)
    deadline = 0.3
    outcome = run(configure(project, ups, retries=10, backoff_base=2, backoff_max=10, deadline=deadline), complete)
    assert isinstance(outcome.error, ServerError | ProviderTimeout)
    attempts = outcome.attempts
    assert len(attempts) < 11 and ups.up.count == len(attempts)
    assert attempts[-1]["decision"].startswith("stop: waiting")
    # Every wait was started only if it ended before the deadline, and so did the last attempt.
    assert all(a["end"] + a["delay"] < deadline + 1e-3 for a in attempts[:-1])
    assert sum(a["delay"] for a in attempts[:-1]) < deadline
    assert attempts[-1]["end"] <= deadline + 0.2  # (event-loop latency, if the deadline cut it)


def test_retry_after_beyond_the_deadline_fails_at_once(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.RATE_LIMIT, times=1, retry_after=5)
    outcome = run(configure(project, ups, retries=2, deadline=1), complete)
    assert isinstance(outcome.error, RateLimited) and outcome.error.retry_after == 5
    assert ups.up.count == 1
    (attempt,) = outcome.attempts
    assert attempt["delay"] is None and attempt["decision"].startswith("stop: waiting 5s would pass the deadline")
    assert attempt["end"] < 1


def test_a_hang_is_cut_at_the_deadline(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.HANG)
    outcome = run(configure(project, ups, retries=2, deadline=0.3), complete)
    assert isinstance(outcome.error, ProviderTimeout) and "routing.deadline" in str(outcome.error)
    assert ups.up.count == 1
    assert 0.3 <= outcome.attempts[-1]["end"] < 1  # not left to the provider's 5s timeout


# -- streams -----------------------------------------------------------------------------------


def test_a_stream_cut_after_its_first_chunk_is_not_retried(project: Path, ups: Upstreams) -> None:
    ups.up.reply = "one two three four five six seven"
    ups.up.script(Fault.STREAM_CUT)
    outcome = run(configure(project, ups, retries=2), stream)
    assert isinstance(outcome.error, UnexpectedResponse)
    assert outcome.chunks and ups.up.count == 1
    assert outcome.attempts == []  # one clean start, nothing retried: the trace's error says the rest


@pytest.mark.parametrize("fault", [Fault.RATE_LIMIT, Fault.ERROR])
def test_a_stream_failing_before_its_first_chunk_is_retried(project: Path, ups: Upstreams, fault: Fault) -> None:
    ups.up.script(fault, retry_after=0)
    outcome = run(configure(project, ups, retries=2), stream)
    assert outcome.error is None and outcome.text == "Echo: hi"
    assert ups.up.count == 2
    assert [a["decision"] for a in outcome.attempts] == ["retry", "ok"]


def test_a_stalled_stream_start_is_cut_by_the_attempt_timeout(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.HANG)
    outcome = run(configure(project, ups, retries=1, attempt_timeout=0.2), stream)
    assert outcome.error is None and outcome.text == "Echo: hi"
    assert ups.up.count == 2
    assert outcome.attempts[0]["error_class"] == "ProviderTimeout"
