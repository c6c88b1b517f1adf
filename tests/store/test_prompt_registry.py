"""The prompt registry and the prompt and drift columns of traces, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import itertools
import threading
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from keel.errors import PromptNotFound
from keel.store import Store, migrate, open_store, prompts
from keel.store.schema import metadata

T0 = 1_700_000_000.0


def version_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


V1, V2, V3 = version_of("one"), version_of("two"), version_of("three")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry's clock ticks one second per reading, so "newest first" is well defined."""
    ticks = itertools.count(T0)
    monkeypatch.setattr(prompts, "time", SimpleNamespace(time=lambda: float(next(ticks))))
    yield


@pytest.fixture
def saved(store: Store, clock: None) -> Store:
    """A store with versions V1, V2, V3 of "summarize" (saved in that order)."""
    for number, version in enumerate([V1, V2, V3], 1):
        assert store.save_prompt_version("summarize", version, {"template": f"v{number}"}) is True
    return store


def call(**fields: Any) -> dict[str, Any]:
    """A trace record of a prompt call (only the fields these tests look at)."""
    return {"id": uuid.uuid4().hex, "started_at": T0, "model": "small", "status": "ok"} | fields


def json_line(record: dict[str, Any]) -> bytes:
    """A record as the trace journal writes it."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


# --- versions -------------------------------------------------------------------------------


def test_saving_a_version_is_idempotent_and_it_round_trips(store: Store) -> None:
    definition = {"messages": [{"role": "system", "content": "Résumé: {{ text }}"}], "params": {"temperature": 0}}
    assert store.save_prompt_version("summarize", V1, definition, source_path="prompts/summarize.prompt.yaml")
    assert store.save_prompt_version("summarize", V1, {"something": "else"}) is False

    stored = store.get_prompt_version("summarize", V1)
    assert stored is not None and stored.pop("created_at") > 0
    assert stored == {"name": "summarize", "version": V1, "definition": definition,
                      "source_path": "prompts/summarize.prompt.yaml"}
    assert store.get_prompt_version("other", V1) is None


def test_a_version_is_found_by_a_unique_prefix_of_four_or_more(store: Store) -> None:
    a, b = "abcd1" + "0" * 59, "abcd2" + "0" * 59
    store.save_prompt_version("summarize", a, {})
    store.save_prompt_version("summarize", b, {})
    store.save_prompt_version("other", "ffff" + "0" * 60, {})

    assert store.get_prompt_version("summarize", "abcd1")["version"] == a  # type: ignore[index]
    assert store.get_prompt_version("summarize", "ABCD2")["version"] == b  # type: ignore[index]
    assert store.get_prompt_version("summarize", "abcd") is None  # ambiguous
    assert store.get_prompt_version("other", "fff") is None  # too short
    assert store.get_prompt_version("other", "ffff")["name"] == "other"  # type: ignore[index]
    assert store.get_prompt_version("summarize", "ffff") is None  # another prompt's
    assert store.get_prompt_version("summarize", "abc%") is None


def test_a_version_must_be_a_sha256(store: Store) -> None:
    with pytest.raises(ValueError, match="64 hex"):
        store.save_prompt_version("summarize", "v1", {})
    assert store.save_prompt_version("summarize", V1.upper(), {}) is True
    assert store.list_prompt_versions()[0]["version"] == V1


def test_versions_are_listed_newest_first(saved: Store) -> None:
    saved.save_prompt_version("other", V1, {"template": "x"})
    assert [v["version"] for v in saved.list_prompt_versions("summarize")] == [V3, V2, V1]
    assert [(v["name"], v["version"]) for v in saved.list_prompt_versions()][:2] == [("other", V1), ("summarize", V3)]
    assert saved.list_prompt_versions("nothing") == []


# --- labels ---------------------------------------------------------------------------------


def test_labels_move_and_every_move_is_recorded(saved: Store) -> None:
    assert saved.set_label("summarize", "prod", V1, actor="ana", reason="first release") is None
    assert saved.set_label("summarize", "staging", V2, actor="ci") is None
    assert saved.set_label("summarize", "prod", V2[:8], actor="bo", reason="better recall") == V1

    assert saved.get_label("summarize", "prod") == V2
    assert saved.get_label("summarize", "dev") is None
    assert saved.labels("summarize") == {"prod": V2, "staging": V2}
    assert saved.labels("other") == {}

    history = saved.label_history("summarize", "prod")
    assert [(m["old_version"], m["new_version"], m["actor"], m["reason"]) for m in history] == [
        (V1, V2, "bo", "better recall"),
        (None, V1, "ana", "first release"),
    ]
    assert history[0]["moved_at"] > history[1]["moved_at"]
    assert [m["label"] for m in saved.label_history("summarize")] == ["prod", "staging", "prod"]


def test_pointing_a_label_where_it_points_records_nothing(saved: Store) -> None:
    saved.set_label("summarize", "prod", V1, actor="ana")
    assert saved.set_label("summarize", "prod", V1, actor="bo") == V1
    assert len(saved.label_history("summarize")) == 1


def test_an_unknown_version_is_refused_naming_the_latest_ones(saved: Store) -> None:
    saved.set_label("summarize", "prod", V1, actor="ana")
    with pytest.raises(PromptNotFound) as caught:
        saved.set_label("summarize", "prod", "0" * 64, actor="bo")
    message = str(caught.value)
    assert "is not a saved version of prompt 'summarize'" in message
    assert f"its latest versions: {V3[:12]}, {V2[:12]}, {V1[:12]}" in message
    assert caught.value.latest == [V3[:12], V2[:12], V1[:12]]  # type: ignore[attr-defined]
    assert saved.get_label("summarize", "prod") == V1
    assert len(saved.label_history("summarize")) == 1


def test_a_prompt_without_versions_or_an_ambiguous_prefix_is_refused(store: Store) -> None:
    with pytest.raises(PromptNotFound, match="it has no saved versions"):
        store.set_label("summarize", "prod", V1, actor="ana")
    store.save_prompt_version("summarize", "abcd1" + "0" * 59, {})
    store.save_prompt_version("summarize", "abcd2" + "0" * 59, {})
    with pytest.raises(PromptNotFound, match="matches several versions"):
        store.set_label("summarize", "prod", "abcd", actor="ana")
    assert store.labels("summarize") == {} and store.label_history("summarize") == []


def test_concurrent_moves_leave_a_consistent_history(store: Store, store_url: str) -> None:
    versions = [version_of(str(i)) for i in range(4)]
    for version in versions:
        store.save_prompt_version("summarize", version, {})
    start, errors = threading.Barrier(len(versions)), []

    def move_repeatedly(version: str, other: str) -> None:
        try:
            with open_store(store_url) as own:  # its own engine, as another process would have
                start.wait()
                for _ in range(15):
                    own.set_label("summarize", "prod", version, actor=version[:4])
                    own.set_label("summarize", "prod", other, actor=version[:4])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=move_repeatedly, args=(v, versions[i - 1])) for i, v in enumerate(versions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    moves = sorted(store.label_history("summarize", "prod"), key=lambda m: m["id"])
    assert len(moves) > len(versions)
    assert moves[0]["old_version"] is None
    for before, after in itertools.pairwise(moves):
        assert after["old_version"] == before["new_version"] != after["new_version"]
    assert store.get_label("summarize", "prod") == moves[-1]["new_version"]


# --- traces of prompt calls -----------------------------------------------------------------


def test_call_stats_count_calls_drift_and_versions(store: Store) -> None:
    store.insert_traces([
        call(prompt_name="summarize", prompt_version=V1, prompt_label="prod", model_drift=False),
        call(prompt_name="summarize", prompt_version=V1, model_drift=True),
        call(prompt_name="summarize", prompt_version=V2, model_drift=True, started_at=T0 + 10),
        call(prompt_name="summarize", prompt_version=V2, started_at=T0 + 20),
        call(prompt_name="summarize"),
        call(prompt_name="other", prompt_version=V1, model_drift=True),
        call(),
    ])
    stats = store.prompt_call_stats("summarize")
    assert stats == {"calls": 5, "drift_calls": 2, "by_version": {V1: 2, V2: 2}}
    assert type(stats["calls"]) is type(stats["drift_calls"]) is int
    assert store.prompt_call_stats("summarize", since=T0 + 5) == {"calls": 2, "drift_calls": 1, "by_version": {V2: 2}}
    assert store.prompt_call_stats("nothing") == {"calls": 0, "drift_calls": 0, "by_version": {}}


def test_traces_are_listed_by_prompt_and_by_drift(store: Store) -> None:
    drifted = call(prompt_name="summarize", prompt_version=V1, model_drift=True, started_at=T0 + 3)
    steady = call(prompt_name="summarize", prompt_version=V1, model_drift=False, started_at=T0 + 2)
    unknown = call(prompt_name="classify", started_at=T0 + 1)
    store.insert_traces([drifted, steady, unknown])

    def ids(**filters: Any) -> list[str]:
        return [t["id"] for t in store.list_traces(**filters)]

    assert ids(prompt="summarize") == [drifted["id"], steady["id"]]
    assert ids(drift=True) == [drifted["id"]]
    assert ids(drift=False) == [steady["id"], unknown["id"]]  # not drifted, or not known to
    assert ids(prompt="summarize", drift=False) == [steady["id"]]
    assert ids(prompt="nothing") == []


def test_prompt_fields_and_notes_round_trip_through_the_journal_format(store: Store) -> None:
    notes = {"attempts": [{"provider": "a", "model": "m", "error_class": "RateLimited", "error": "429", "delay": 0.5}],
             "answered_by": "b/m", "cache": "hit"}
    record = call(prompt_name="summarize", prompt_version=V1, prompt_label="prod", model_drift=True, notes=notes)
    assert store.insert_trace_jsonl(json_line(record)) == 1
    stored = store.get_trace(record["id"])
    assert stored is not None
    assert {k: stored[k] for k in ("prompt_name", "prompt_version", "prompt_label", "model_drift", "notes")} == {
        "prompt_name": "summarize", "prompt_version": V1, "prompt_label": "prod", "model_drift": True, "notes": notes}


def test_records_without_the_new_fields_still_insert(store: Store) -> None:
    record = call()
    assert store.insert_traces([record]) == 1
    assert store.insert_trace_jsonl(json_line(call(id="f" * 32))) == 1
    for trace_id in (record["id"], "f" * 32):
        stored = store.get_trace(trace_id)
        assert stored is not None
        assert [stored[k] for k in ("prompt_name", "prompt_version", "prompt_label", "model_drift", "notes")] == [None] * 5


# --- migration 0002 -------------------------------------------------------------------------


def test_downgrading_0002_keeps_the_traces_and_drops_the_registry(saved: Store, store_url: str) -> None:
    saved.set_label("summarize", "prod", V1, actor="ana")
    record = call(prompt_name="summarize", prompt_version=V1, model_drift=True, tags={"team": "search"})
    saved.insert_traces([record])

    migrate.downgrade(saved.engine, "0001")
    with saved.engine.connect() as connection:
        schema = inspect(connection)
        assert not {"prompt_versions", "prompt_labels", "prompt_label_moves"} & set(schema.get_table_names())
        assert "prompt_name" not in {c["name"] for c in schema.get_columns("traces")}
        assert "ix_traces_model_started_at" in {i["name"] for i in schema.get_indexes("traces")}

    with open_store(store_url) as reopened, reopened.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        stored = reopened.get_trace(record["id"])
        assert stored is not None and stored["tags"] == {"team": "search"} and stored["prompt_name"] is None
        assert reopened.list_prompt_versions() == []
