"""Eval runs and results in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from testenv import PG_URL

from keel.store import Store, open_store
from keel.store.testing import temporary_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        with open_store(f"sqlite:///{tmp_path / 'keel.db'}") as opened:
            yield opened
    else:
        with temporary_database(PG_URL) as url, open_store(url) as opened:
            yield opened


def _result(**fields: object) -> dict[str, object]:
    row = {"run_id": "r1" + "0" * 30, "case_id": "a", "model": "m", "prompt": "p", "repeat": 0, "output": "héllo",
           "passed": True, "score": 0.75, "assertions": [{"type": "equals", "passed": True, "details": {"x": [1]}}],
           "error": None, "latency_ms": 12.5, "prompt_tokens": 3, "completion_tokens": 4, "cost": Decimal("0.000012345"),
           "trace_id": "t" * 32, "created_at": 1700000000.25, "cached": False}
    return row | fields


def test_a_run_and_its_results_round_trip(store: Store) -> None:
    run_id = "r1" + "0" * 30
    store.create_eval_run(run_id, "suite", "h" * 64, {"repeat": 2, "models": ["m"]})
    assert store.save_eval_result(_result()) is True
    assert store.save_eval_result(_result(output="again")) is False  # the saved answer is kept
    store.save_eval_result(_result(repeat=1, cost=None, passed=False, output=None, error="ProviderTimeout: slow"))
    [first, second] = store.eval_results(run_id)
    assert first == _result() | {"cost": "0.000012345"}
    assert second["cost"] is None and second["error"] == "ProviderTimeout: slow" and second["passed"] is False
    run = store.get_eval_run(run_id[:6])
    assert run is not None and run["status"] == "running" and run["config"] == {"repeat": 2, "models": ["m"]}
    assert store.unfinished_eval_run("suite", "h" * 64)["id"] == run_id  # type: ignore[index]
    store.finish_eval_run(run_id, "finished", {"passed": True, "cells": []})
    run = store.get_eval_run(run_id)
    assert run["status"] == "finished" and run["finished_at"] and run["summary"] == {"passed": True, "cells": []}  # type: ignore[index]
    assert store.unfinished_eval_run("suite", "h" * 64) is None


def test_results_saved_in_one_batch_keep_those_already_saved(store: Store) -> None:
    run_id = "r1" + "0" * 30
    store.create_eval_run(run_id, "suite", "h" * 64, {})
    store.save_eval_result(_result())
    store.save_eval_results([_result(output="again"), _result(repeat=1, cached=True), _result(repeat=2, cost=None)])
    store.save_eval_results([])
    rows = store.eval_results(run_id)
    assert [(r["repeat"], r["output"], r["cached"], r["cost"]) for r in rows] == [
        (0, "héllo", False, "0.000012345"), (1, "héllo", True, "0.000012345"), (2, "héllo", False, None)]


def test_a_finished_runs_answers_that_did_not_fail_are_copied_into_a_new_run(store: Store) -> None:
    source, target = "r1" + "0" * 30, "r2" + "0" * 30
    store.create_eval_run(source, "suite", "h" * 64, {})
    store.save_eval_results([_result(), _result(repeat=1, error="ProviderTimeout: slow", passed=False)])
    assert store.reusable_eval_run("suite", "h" * 64, since=0) is None  # still running
    store.finish_eval_run(source, "finished", {"passed": True, "cells": []})
    run = store.get_eval_run(source)
    assert run is not None
    assert store.reusable_eval_run("suite", "h" * 64, since=0)["id"] == source  # type: ignore[index]
    assert store.reusable_eval_run("suite", "other", since=0) is None
    assert store.reusable_eval_run("suite", "h" * 64, since=run["finished_at"]) is None  # too old
    store.create_eval_run(target, "suite", "h" * 64, {})
    assert store.copy_eval_results(source, target) == 1
    [copied] = store.eval_results(target)
    assert copied == _result(run_id=target, cost="0.000012345", cached=True, created_at=copied["created_at"])
    assert copied["created_at"] > 1700000000.25 and len(store.eval_results(source)) == 2


def test_listing_runs_newest_first(store: Store) -> None:
    for index, suite in enumerate(["a", "b", "a"]):
        store.create_eval_run(f"{index:032d}", suite, "h", {})
    assert [r["id"][-1] for r in store.list_eval_runs()] == ["2", "1", "0"]
    assert [r["id"][-1] for r in store.list_eval_runs("a", limit=1)] == ["2"]
    assert store.get_eval_run("0000") is None  # ambiguous prefix
    assert store.get_eval_run("") is None


def test_the_result_writer_saves_a_full_batch_without_waiting_for_its_interval(store: Store) -> None:
    from keel.evals.runner import ResultWriter

    run_id = "r1" + "0" * 30
    store.create_eval_run(run_id, "suite", "h" * 64, {})

    async def scenario() -> tuple[int, int]:
        writer = ResultWriter(store, interval=60, batch=2)
        writer.add(_result(repeat=0))
        writer.add(_result(repeat=1))
        for _ in range(500):  # a full batch goes at once, in a worker thread
            if store.eval_results(run_id):
                break
            await asyncio.sleep(0.01)
        writer.add(_result(repeat=2))  # not a full batch: it waits for the interval, or the drain
        await asyncio.sleep(0.05)
        early = len(store.eval_results(run_id))
        await writer.drain()
        return early, len(store.eval_results(run_id))

    assert asyncio.run(scenario()) == (2, 3)
