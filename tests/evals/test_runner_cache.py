"""Re-running a suite: answers from the response cache, against a counting OpenAI upstream on 127.0.0.1.

Repeat i of a call is one cache entry across runs, repeats within a run are distinct entries;
a changed case or prompt asks only what changed; --no-cache asks everything again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eval_support import run_suite, suite_text, write_suite
from upstreams import Fault, OpenAIUpstream

import keel.cli as cli
from keel import AsyncClient
from keel.evals.runner import RunResult
from keel.evals.suite import load_suite
from keel.evals.summary import summarize
from keel.store import open_store

SHOUT = """  - name: shout
    messages: [{role: user, content: "{{ text }}!"}]
"""
SUITE = suite_text("[m]", SHOUT, 0)
#: 2 prompts × 3 cases × 2 repeats
CALLS = 12
#: What a re-run must reproduce in each cell.
FIGURES = ("items", "passed", "pass_rate", "mean_score", "consistency", "prompt_tokens", "completion_tokens", "cost")


@pytest.fixture
def up(project: Path) -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream() as upstream:
        (project / "keel.toml").write_text(
            f'[providers.up]\ntype = "openai"\nbase_url = "{upstream.base_url}"\n\n'
            '[models.m]\nprovider = "up"\nmodel = "up-model"\nprice = {input_per_mtok = 1, output_per_mtok = 2}\n')
        yield upstream


def results(run_id: str) -> list[dict[str, Any]]:
    with open_store(AsyncClient(record=False).settings.effective_store_url) as store:
        return store.eval_results(run_id)


def traces() -> list[dict[str, Any]]:
    with open_store(AsyncClient(record=False).settings.effective_store_url) as store:
        return store.list_traces(limit=1000)


def answers(result: RunResult) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    """Each answer's figures, by prompt, case and repeat."""
    return {(r["prompt"], r["case_id"], r["repeat"]): (
        r["output"], r["passed"], r["score"], [(a["type"], a["passed"], a["score"]) for a in r["assertions"]],
        r["prompt_tokens"], r["completion_tokens"], r["cost"]) for r in results(result.run_id)}


def figures(result: RunResult) -> list[dict[str, Any]]:
    return [{name: cell[name] for name in FIGURES} for cell in result.summary["cells"]]


def asked(up: OpenAIUpstream, since: int = 0) -> list[str]:
    return sorted(request.body["messages"][-1]["content"] for request in up.requests[since:])


def test_a_rerun_of_an_unchanged_suite_asks_nothing_and_scores_the_same(project: Path, up: OpenAIUpstream) -> None:
    path = write_suite(project, SUITE)
    first = run_suite(path)
    assert up.count == CALLS and first.cached == 0
    up.reply = "a different answer"  # what the upstream would say now: not what the re-run shows
    second = run_suite(path)
    assert up.count == CALLS
    assert second.run_id != first.run_id and not second.resumed and second.ran == second.cached == CALLS
    assert second.reused_from == first.run_id
    assert answers(second) == answers(first) and figures(second) == figures(first)
    config = load_suite(path).config  # the summary carried over is the one its answers give
    assert second.summary == summarize(results(second.run_id), config.thresholds.model_dump(), config.repeat)
    assert [cell["cached"] for cell in second.summary["cells"]] == [CALLS // 2] * 2
    assert {r["cached"] for r in results(first.run_id)} == {False}
    assert {r["cached"] for r in results(second.run_id)} == {True}
    # Each carried-over answer links the trace of the call that produced it; no call, no new trace.
    assert {r["trace_id"] for r in results(second.run_id)} == {r["trace_id"] for r in results(first.run_id)}
    assert not [t for t in traces() if t["tags"]["eval_run"] == second.run_id]


def test_answers_not_carried_over_come_from_the_response_cache_with_a_trace_each(project: Path,
                                                                                up: OpenAIUpstream) -> None:
    path = write_suite(project, SUITE)
    run_suite(path)
    (project / "keel.toml").write_text((project / "keel.toml").read_text() + "[routing]\nretries = 1\n")
    second = run_suite(path)  # the settings changed: no carry-over, yet the same calls
    assert up.count == CALLS and second.cached == CALLS and second.reused_from is None
    hits = [t for t in traces() if t["tags"]["eval_run"] == second.run_id]
    assert len(hits) == CALLS and {t["id"] for t in hits} == {r["trace_id"] for r in results(second.run_id)}
    assert {(t["notes"]["cache"], t["cost"], t["cost_source"]) for t in hits} == {("hit", "0", "cache hit")}


@pytest.mark.parametrize("change", ["price", "check", "model"])
def test_a_change_outside_the_suite_scores_again(project: Path, up: OpenAIUpstream, change: str) -> None:
    (project / "checks.py").write_text("def short(output, case):\n    return len(output) < 100\n")
    path = write_suite(project, SUITE.replace("{type: equals}", "{type: equals}\n  - {type: python, function: checks:short}"))
    first = run_suite(path)
    config = project / "keel.toml"
    if change == "price":
        config.write_text(config.read_text().replace("output_per_mtok = 2", "output_per_mtok = 4"))
    elif change == "check":
        (project / "checks.py").write_text("def short(output, case):\n    return len(output) < 5\n")
    else:
        config.write_text(config.read_text().replace('model = "up-model"', 'model = "up-model-2"'))
    second = run_suite(path)
    assert second.reused_from is None
    if change == "price":  # the same answers from the cache, costed at today's price
        assert up.count == CALLS
        for row in results(second.run_id):
            assert Decimal(row["cost"]) == (row["prompt_tokens"] * 1 + row["completion_tokens"] * 4) / Decimal(10**6)
    elif change == "check":
        assert up.count == CALLS and second.summary["cells"][0]["passed"] == 0
    else:
        assert up.count == 2 * CALLS


def test_no_carry_over_from_a_run_older_than_the_cache_ttl(project: Path, up: OpenAIUpstream) -> None:
    (project / "keel.toml").write_text((project / "keel.toml").read_text() + "[cache]\nttl = 2\n")
    path = write_suite(project, SUITE)
    first = run_suite(path)
    assert run_suite(path).reused_from == first.run_id
    time.sleep(2.1)  # the run and its cached answers are out of date now
    late = run_suite(path)
    assert late.reused_from is None and up.count == 2 * CALLS


def test_repeats_within_a_run_each_ask_the_upstream(project: Path, up: OpenAIUpstream) -> None:
    path = write_suite(project, SUITE.replace(SHOUT, "").replace("repeat: 2", "repeat: 3"))
    run_suite(path, cache=True)
    assert asked(up) == ["one"] * 3 + ["three"] * 3 + ["two"] * 3  # the same request, three independent answers
    run_suite(path)
    assert up.count == 9


def test_a_changed_case_or_prompt_asks_only_what_changed(project: Path, up: OpenAIUpstream) -> None:
    path = write_suite(project, SUITE)
    run_suite(path)
    path.write_text(path.read_text().replace("{text: two}", "{text: deux}").replace(
        "    - {id: c,", '    - {id: d, vars: {text: four}, expected: "Echo: four"}\n    - {id: c,'))
    second = run_suite(path)
    assert asked(up, CALLS) == ["deux"] * 2 + ["deux!"] * 2 + ["four"] * 2 + ["four!"] * 2
    assert second.cached == 2 * 2 * 2  # a and c, both prompts, both repeats
    path.write_text(path.read_text().replace('content: "{{ text }}!"', 'content: "{{ text }}?"'))
    third = run_suite(path)
    assert asked(up, CALLS + 8) == sorted(f"{text}?" for text in ("one", "deux", "three", "four") for _ in range(2))
    assert third.cached == 8  # the echo prompt did not change


def test_no_cache_asks_everything_again(project: Path, up: OpenAIUpstream) -> None:
    path = write_suite(project, SUITE)
    run_suite(path)
    again = run_suite(path, cache=False)
    assert up.count == 2 * CALLS and again.cached == 0
    assert {r["cached"] for r in results(again.run_id)} == {False}


def test_the_cli_says_what_came_from_the_cache_and_no_cache_asks_again(project: Path, up: OpenAIUpstream,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = write_suite(project, SUITE)
    for argv in (["eval", "run", str(path)], ["eval", "run", str(path)], ["eval", "run", str(path), "--no-cache"]):
        with pytest.raises(SystemExit) as caught:
            cli.main(argv)
            raise SystemExit(0)
        assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.count(f"{CALLS} of {CALLS} answers carried over from run") == 1
    assert up.count == 2 * CALLS


def test_a_cached_answer_is_scored_with_the_latency_of_the_call_that_produced_it(project: Path,
                                                                               up: OpenAIUpstream) -> None:
    latency = SUITE.replace(SHOUT, "").replace("repeat: 2", "repeat: 1").replace("{type: equals}", "{type: latency, max_ms: 250}")
    path = write_suite(project, latency)
    up.script(Fault.SLOW, times=1, delay=0.3)  # one slow answer (which case's is not known in advance)
    first = run_suite(path)
    second = run_suite(path)
    assert second.cached == 3 and up.count == 3
    assert answers(second) == answers(first)  # the slow one fails again, the others pass again
    [slow] = [r for r in results(second.run_id) if not r["passed"]]
    assert slow["latency_ms"] >= 300 and "took" in slow["assertions"][0]["message"]


def test_a_failed_call_is_asked_again(project: Path, up: OpenAIUpstream) -> None:
    path = write_suite(project, SUITE)
    up.script(Fault.ERROR, times=1, status=400)
    first = run_suite(path)
    assert sum(1 for r in results(first.run_id) if r["error"]) == 1
    second = run_suite(path)
    assert up.count == CALLS + 1 and second.cached == CALLS - 1
    assert not any(r["error"] for r in results(second.run_id))
