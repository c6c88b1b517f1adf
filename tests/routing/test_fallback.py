"""FallbackStage: the primary (OpenAI-compatible) fails, the secondary (Anthropic) answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from upstreams import Fault

from keel.errors import AllProvidersFailed, ConfigError, InvalidRequest, RateLimited, ServerError

from .conftest import Routed, Upstreams, configure, run


def complete(routed: Routed):
    return routed.complete()


def stream(routed: Routed):
    return routed.stream()


@pytest.mark.parametrize("call", [complete, stream])
def test_a_dead_primary_falls_back_to_the_secondary(project: Path, ups: Upstreams, call) -> None:
    ups.up.script(Fault.ERROR, times=100, status=503)
    outcome = run(configure(project, ups, fallbacks=["secondary"], retries=1), call)
    assert outcome.error is None and outcome.text == "Echo: hi"
    assert ups.up.count == 2 and ups.claude.count == 1
    assert outcome.call.target.alias == "secondary" and outcome.call.target.provider.name == "claude"
    assert outcome.call.notes["answered_by"] == "secondary"
    (failure,) = outcome.call.notes["fallback_failures"]
    assert failure["model"] == "primary" and failure["error_class"] == "ServerError" and failure["status"] == 503
    assert [(a["model"], a["decision"]) for a in outcome.attempts] == [
        ("primary", "retry"), ("primary", "stop: all 1 retries used"), ("secondary", "ok")]


def test_the_answer_names_the_provider_that_gave_it(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.ERROR, times=100, status=500)
    outcome = run(configure(project, ups, fallbacks=["secondary"], retries=0), complete)
    assert outcome.response is not None and outcome.response.provider == "claude"


def test_when_every_model_fails_every_cause_is_listed(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.ERROR, times=100, status=503)
    ups.claude.script(Fault.RATE_LIMIT, times=100, retry_after=0)
    outcome = run(configure(project, ups, fallbacks=["secondary", "claude/claude-haiku"], retries=0), complete)
    error = outcome.error
    assert isinstance(error, AllProvidersFailed)
    assert [type(e) for e in error.exceptions] == [ServerError, RateLimited, RateLimited]
    text = str(error)
    for name in ("primary (up/gpt-4o-mini) → ServerError", "secondary (claude/claude-sonnet-4-5) → RateLimited",
                 "claude/claude-haiku (claude/claude-haiku) → RateLimited", "HTTP 503", "HTTP 429"):
        assert name in text
    assert outcome.call.target.alias == "primary"
    failed = [f["model"] for f in outcome.call.notes["fallback_failures"]]
    assert failed == ["primary", "secondary", "claude/claude-haiku"]
    assert "answered_by" not in outcome.call.notes


def test_an_upstream_model_is_tried_once_whatever_names_lead_to_it(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.ERROR, times=100, status=500)
    ups.claude.script(Fault.ERROR, times=100, status=500)
    fallbacks = ["secondary", "claude/claude-sonnet-4-5", "up/gpt-4o-mini", "primary"]
    outcome = run(configure(project, ups, fallbacks=fallbacks, retries=0), complete)
    assert isinstance(outcome.error, AllProvidersFailed) and len(outcome.error.exceptions) == 2
    assert ups.up.count == 1 and ups.claude.count == 1


def test_without_fallbacks_the_error_is_not_wrapped(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.ERROR, times=100, status=503)
    outcome = run(configure(project, ups, retries=0), complete)
    assert type(outcome.error) is ServerError


def test_an_invalid_request_does_not_fall_back(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.ERROR, status=400)
    outcome = run(configure(project, ups, fallbacks=["secondary"]), complete)
    assert isinstance(outcome.error, InvalidRequest)
    assert ups.up.count == 1 and ups.claude.count == 0


def test_a_missing_key_on_the_primary_falls_back(
    project: Path, ups: Upstreams, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEEL_TEST_ABSENT_KEY", raising=False)
    settings = configure(project, ups, fallbacks=["secondary"], up_options={"api_key_env": "KEEL_TEST_ABSENT_KEY"})
    outcome = run(settings, complete)
    assert outcome.error is None and outcome.call.notes["answered_by"] == "secondary"
    assert ups.up.count == 0
    assert "KEEL_TEST_ABSENT_KEY" in outcome.call.notes["fallback_failures"][0]["error"]


def test_a_fallback_that_does_not_resolve_is_a_config_error_at_once(project: Path, ups: Upstreams) -> None:
    outcome = run(configure(project, ups, fallbacks=["secondary", "no-such-model"]), complete)
    assert isinstance(outcome.error, ConfigError)
    assert "'primary' lists the fallback 'no-such-model'" in str(outcome.error)
    assert ups.up.count == 0 and ups.claude.count == 0


def test_the_deadline_is_shared_with_the_fallbacks(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.HANG)
    outcome = run(configure(project, ups, fallbacks=["secondary"], deadline=0.3), complete)
    assert isinstance(outcome.error, AllProvidersFailed)
    assert "not tried, the deadline passed: secondary" in str(outcome.error)
    assert ups.up.count == 1 and ups.claude.count == 0


def test_a_stream_cut_after_its_first_chunk_does_not_fall_back(project: Path, ups: Upstreams) -> None:
    ups.up.reply = "one two three four five six seven"
    ups.up.script(Fault.STREAM_CUT)
    outcome = run(configure(project, ups, fallbacks=["secondary"], retries=0), stream)
    assert outcome.error is not None and outcome.chunks
    assert ups.up.count == 1 and ups.claude.count == 0
    assert outcome.call.notes["answered_by"] == "primary"
