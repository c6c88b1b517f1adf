"""The runner on the fake provider: results, tracing, concurrency, resume, unknown costs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from eval_support import ECHO_SUITE, run_suite, write_suite
from upstreams import OpenAIUpstream

from keel import AsyncClient
from keel.evals.runner import EvalRunner
from keel.evals.suite import load_suite
from keel.store import open_store


def test_run_scores_saves_and_summarizes(echo_suite: Path) -> None:
    result = run_suite(echo_suite)
    [cell] = result.summary["cells"]
    assert (cell["items"], cell["passed"], cell["pass_rate"], cell["cases_passed"]) == (6, 4, 4 / 6, 2)
    assert cell["consistency"] == 1.0 and cell["cost"] == "0" and cell["cost_unknown"] == 0
    assert cell["pass_at_k"] == cell["pass_hat_k"] == 2 / 3
    assert result.passed and result.ran == 6 and not result.resumed


def test_every_call_is_traced_with_run_suite_and_case(echo_suite: Path) -> None:
    result = run_suite(echo_suite)
    async def traces() -> list[dict[str, Any]]:
        async with AsyncClient() as client:
            store = open_store(client.settings.effective_store_url)
            rows = store.list_traces(limit=100)
            results = store.eval_results(result.run_id)
            store.close()
            return [rows, results]
    rows, results = asyncio.run(traces())
    assert len(rows) == 6 and {r["tags"]["eval_run"] for r in rows} == {result.run_id}
    assert {r["tags"]["case"] for r in rows} == {"a", "b", "c"} and {r["tags"]["suite"] for r in rows} == {"s"}
    assert {r["trace_id"] for r in results} == {r["id"] for r in rows}


def test_repeats_are_independent_answers(project: Path) -> None:
    path = write_suite(project, ECHO_SUITE.replace("thresholds: {pass_rate: 0.5}", "params: {temperature: 0}\nthresholds: {pass_rate: 0.5}"))
    seen: list[Any] = []
    run_suite(path, client_setup=lambda c: seen.append(c.provider("fake")))
    assert len(seen[0].history) == 6  # the same request at temperature 0: every repeat still reached the provider


def test_thresholds_fail_the_suite(project: Path) -> None:
    path = write_suite(project, ECHO_SUITE.replace("pass_rate: 0.5", "pass_rate: 0.9, min_pass_rate: 0.5"))
    result = run_suite(path)
    assert not result.passed
    assert result.summary["failures"] == ["echo × fake/echo: pass rate 66.7% < 90%",
                                          "echo × fake/echo: case c passed 0% of its repeats < 50%"]


def test_concurrency_is_bounded_per_provider(project: Path) -> None:
    cases = "".join(f"    - {{id: c{i}, vars: {{text: t{i}}}, expected: 'Echo: t{i}'}}\n" for i in range(12))
    path = write_suite(project, ECHO_SUITE.split("  cases:\n")[0] + "  cases:\n" + cases + "assertions: [{type: equals}]\n")
    state = {"now": 0, "peak": 0}

    def slow(client: AsyncClient) -> None:
        fake = client.provider("fake")
        original = fake.complete

        async def complete(request: Any, model: str) -> Any:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            await asyncio.sleep(0.01)
            state["now"] -= 1
            return await original(request, model)

        fake.complete = complete

    result = run_suite(path, client_setup=slow, concurrency=3)
    assert result.ran == 12 and state["peak"] == 3


def test_resume_after_interruption_runs_only_what_is_missing(project: Path) -> None:
    cases = "".join(f"    - {{id: c{i}, vars: {{text: t{i}}}, expected: 'Echo: t{i}'}}\n" for i in range(10))
    path = write_suite(project, ECHO_SUITE.split("  cases:\n")[0] + "  cases:\n" + cases + "assertions: [{type: equals}]\nrepeat: 2\n")
    calls: list[tuple[str, str]] = []

    async def interrupted() -> str:
        async with AsyncClient() as client:
            store = open_store(client.settings.effective_store_url)
            fake = client.provider("fake")
            original = fake.complete

            async def slow(request: Any, model: str) -> Any:
                await asyncio.sleep(0.01)
                return await original(request, model)

            fake.complete = slow
            finished = []
            task: asyncio.Task[Any] | None = None

            def on_result(row: dict[str, Any]) -> None:
                finished.append(row)
                if len(finished) == 7 and task is not None:
                    task.cancel()

            runner = EvalRunner(client, store, load_suite(path), concurrency=2, on_result=on_result)
            task = asyncio.ensure_future(runner.run())
            try:
                await task
            except asyncio.CancelledError:
                pass
            calls.extend((m, r.messages[-1].text()) for m, r in fake.history)
            [run] = store.list_eval_runs()
            store.close()
            return str(run["status"])

    assert asyncio.run(interrupted()) == "interrupted"
    async def saved() -> list[tuple[str, int]]:
        store = open_store(AsyncClient(record=False).settings.effective_store_url)
        [run] = store.list_eval_runs()
        rows = [(r["case_id"], r["repeat"]) for r in store.eval_results(run["id"])]
        store.close()
        return rows
    before = asyncio.run(saved())
    assert 7 <= len(before) < 20

    history: list[Any] = []
    result = run_suite(path, client_setup=lambda c: history.append(c.provider("fake")))
    assert result.resumed and result.skipped == len(before) and result.ran == 20 - len(before)
    assert len(history[0].history) == 20 - len(before)  # no saved answer was asked again
    rerun = {r.messages[-1].text() for _, r in history[0].history}
    complete = {case for case, repeat in before if repeat == 0 and (case, 1) in before}
    assert not {f"t{case[1:]}" for case in complete} & rerun  # cases done in full were not called again
    assert result.summary["cells"][0]["items"] == 20


def test_a_changed_suite_starts_a_new_run(echo_suite: Path) -> None:
    first = run_suite(echo_suite)
    echo_suite.write_text(echo_suite.read_text().replace("repeat: 2", "repeat: 1"))
    second = run_suite(echo_suite)
    assert second.run_id != first.run_id and not second.resumed and second.ran == 3


def test_unknown_cost_stays_unknown(project: Path) -> None:
    with OpenAIUpstream() as up:
        up.reply = "hello"
        (project / "keel.toml").write_text(
            f'[providers.up]\ntype = "openai"\nbase_url = "{up.base_url}"\n\n'
            '[models.priceless]\nprovider = "up"\nmodel = "no-such-model"\n')
        path = write_suite(project, ECHO_SUITE.replace("[fake/echo]", "[priceless]").replace(
            "{type: equals}", "{type: cost, max: 1}\n  - {type: contains, value: hello}"))
        result = run_suite(path)
    [cell] = result.summary["cells"]
    assert cell["cost"] is None and cell["cost_unknown"] == 6 and cell["pass_rate"] == 0.0
    assert cell["mean_score"] == 0.5


def test_provider_errors_become_failed_answers(echo_suite: Path) -> None:
    from keel.errors import InvalidRequest

    result = run_suite(echo_suite, client_setup=lambda c: c.provider("fake").queue(InvalidRequest("bad", provider="fake")))
    rows = [c for c in result.summary["cells"]]
    assert rows[0]["errors"] == 1 and rows[0]["passed"] == 3
