"""The store, one suite over SQLite and PostgreSQL (the fixtures are in conftest.py)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from keel.errors import StoreError
from keel.store import Store, migrate, open_store
from keel.store.schema import metadata

#: Every revision, oldest first.
REVISIONS = [r.revision for r in reversed(list(ScriptDirectory.from_config(Config(str(migrate.INI))).walk_revisions()))]


SEED_0001_ID = "0001" + "a" * 28


def seed_0001(engine: Engine) -> list[str]:
    """A trace written with plain SQL at revision 0001, before the prompt and drift columns."""
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO traces (id, started_at, model, status, tags) "
            """VALUES (:id, 1700000000.5, 'small', 'ok', '{"team": "seed"}')"""
        ), {"id": SEED_0001_ID})
    return [SEED_0001_ID]


SEED_0002_ID = "0002" + "b" * 28


def seed_0002(engine: Engine) -> list[str]:
    """A trace of a prompt call and the prompt's version, written with plain SQL at revision 0002."""
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO traces (id, started_at, model, status, tags, prompt_name, prompt_version) "
            """VALUES (:id, 1700000001.5, 'small', 'ok', '{"team": "seed"}', 'summarize', :version)"""
        ), {"id": SEED_0002_ID, "version": "cd" * 32})
        connection.execute(text(
            "INSERT INTO prompt_versions (name, version, definition, created_at) "
            """VALUES ('summarize', :version, '{"messages": []}', 1700000001.0)"""
        ), {"version": "cd" * 32})
    return [SEED_0002_ID]


SEED_0003_ID = "0003" + "c" * 28


def seed_0003(engine: Engine) -> list[str]:
    """A trace and a response cache entry, written with plain SQL at revision 0003."""
    seed_0002(engine)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO traces (id, started_at, model, status, tags, notes) "
            """VALUES (:id, 1700000002.5, 'small', 'ok', '{"team": "seed"}', '{"cache": "hit"}')"""
        ), {"id": SEED_0003_ID})
        connection.execute(text(
            "INSERT INTO response_cache (key, value, created_at, expires_at) VALUES ('seed', :value, 1.0, 9e18)"
        ), {"value": b'{"seed": true}'})
    return [SEED_0002_ID, SEED_0003_ID]


#: Rows written at an older revision, to check that later migrations keep them: for each
#: revision, a function that writes with plain SQL and returns the trace ids it wrote.
SEEDS: dict[str, Callable[[Engine], list[str]]] = {"0001": seed_0001, "0002": seed_0002, "0003": seed_0003}


def make_trace(**fields: Any) -> dict[str, Any]:
    now = time.time()
    trace = {
        "id": uuid.uuid4().hex, "parent_id": None, "kind": "chat", "source": "library",
        "started_at": now, "ended_at": now + 0.25, "latency_ms": 250.0, "ttft_ms": None,
        "provider": "fake", "model": "small", "upstream_model": "fake-small-1", "fingerprint": None,
        "request": {"messages": [{"role": "user", "content": "héllo"}], "params": {"temperature": 0.2}},
        "response": {"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"},
        "prompt_tokens": 5, "completion_tokens": 1, "cached_tokens": None, "usage_estimated": False,
        "cost": Decimal("0.000012345"), "cost_source": "catalog", "currency": "USD", "status": "ok",
        "error_class": None, "error_message": None, "stream": False, "tags": {"team": "search"},
        "prompt_name": None, "prompt_version": None, "prompt_label": None, "model_drift": None, "notes": None,
    }
    return trace | fields


# --- migrations -----------------------------------------------------------------------------


def test_open_migrates_an_empty_database_to_head(store: Store) -> None:
    with store.engine.connect() as connection:
        assert migrate.current_revision(connection) == REVISIONS[-1] == migrate.head_revision()
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == REVISIONS[-1]
        assert {"traces", "alembic_version"} <= set(inspect(connection).get_table_names())


def test_schema_module_matches_the_migrations(store: Store) -> None:
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []


@pytest.mark.parametrize("older", ["base", *REVISIONS[:-1]])
def test_upgrade_from_an_older_schema_keeps_the_data(engine: Engine, store_url: str, older: str) -> None:
    if older != "base":
        migrate.upgrade(engine, older)
    seeded = SEEDS[older](engine) if older in SEEDS else []
    with open_store(store_url) as store:
        with store.engine.connect() as connection:
            assert migrate.current_revision(connection) == REVISIONS[-1]
        for trace_id in seeded:
            stored = store.get_trace(trace_id)
            assert stored is not None and stored["started_at"] and stored["model"] and stored["tags"]


def test_downgrade_to_base_and_back(store: Store, store_url: str) -> None:
    migrate.downgrade(store.engine, "base")
    with store.engine.connect() as connection:
        assert "traces" not in inspect(connection).get_table_names()
    with open_store(store_url) as reopened:
        assert reopened.count_traces() == 0


def test_reopening_keeps_traces(store: Store, store_url: str) -> None:
    store.insert_traces([make_trace()])
    with open_store(store_url) as reopened:
        assert reopened.count_traces() == 1


def test_concurrent_openers_of_a_fresh_database_all_succeed(store_url: str) -> None:
    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            open_store(store_url).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_stores_on_different_files_can_be_opened_at_once_from_threads(tmp_path: Path) -> None:
    # Alembic's `context` and `op` are process globals: two migrations running at once in
    # one process (two clients with different projects) used to trip over each other.
    count = 8
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def open_and_write(index: int) -> None:
        try:
            barrier.wait()
            with open_store(f"sqlite:///{tmp_path / f'keel-{index}.db'}") as store:
                store.insert_traces([make_trace()])
                assert store.count_traces() == 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_a_database_from_a_newer_keel_is_refused(engine: Engine, store_url: str) -> None:
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="newer"):
        open_store(store_url)


# --- reading and writing --------------------------------------------------------------------


def test_a_trace_round_trips_field_for_field(store: Store) -> None:
    notes = {"attempts": [{"provider": "fake", "model": "small", "error_class": "RateLimited", "error": "429",
                           "delay": 0.5}], "answered_by": "fake/small", "cache": "hit"}
    trace = make_trace(ttft_ms=12.5, cached_tokens=3, stream=True, usage_estimated=True, fingerprint="fp_1",
                       prompt_name="summarize", prompt_version="ab" * 32, prompt_label="prod", model_drift=True,
                       notes=notes)
    assert store.insert_traces([trace]) == 1
    assert store.get_trace(trace["id"]) == trace | {"cost": "0.000012345"}


@pytest.mark.parametrize("cost", ["0.000012345", "0.10", "0", "1E-7", "12345678901234567890.123456789"])
def test_cost_is_stored_as_the_exact_decimal_string(store: Store, cost: str) -> None:
    trace = make_trace(cost=Decimal(cost))
    store.insert_traces([trace])
    assert store.get_trace(trace["id"])["cost"] == cost  # type: ignore[index]


def test_unknown_cost_stays_none_and_empty_documents_stay_null(store: Store) -> None:
    trace = make_trace(cost=None, response=None, status="error", error_class="ProviderTimeout")
    store.insert_traces([trace])
    stored = store.get_trace(trace["id"])
    assert stored is not None and stored["cost"] is None and stored["response"] is None
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM traces WHERE response IS NULL")).scalar_one() == 1


def test_documents_that_are_not_objects_still_round_trip(store: Store) -> None:
    trace = make_trace(tags="not an object", response=["a", 1])
    store.insert_traces([trace])
    stored = store.get_trace(trace["id"])
    assert stored is not None and stored["tags"] == "not an object" and stored["response"] == ["a", 1]


def test_inserting_an_id_twice_is_a_no_op(store: Store) -> None:
    first = make_trace(model="first")
    assert store.insert_traces([first]) == 1
    assert store.insert_traces([first | {"model": "second"}, first]) == 0
    assert store.count_traces() == 1
    assert store.get_trace(first["id"])["model"] == "first"  # type: ignore[index]


def test_list_is_newest_first_with_filters_and_limit(store: Store) -> None:
    base = 1_700_000_000.0
    traces = [
        make_trace(started_at=base + i, model="big" if i % 2 else "small", status="error" if i == 3 else "ok")
        for i in range(6)
    ]
    store.insert_traces(traces)
    ids = [t["id"] for t in traces]

    assert [t["id"] for t in store.list_traces()] == ids[::-1]
    assert [t["id"] for t in store.list_traces(limit=2)] == [ids[5], ids[4]]
    assert [t["id"] for t in store.list_traces(model="big")] == [ids[5], ids[3], ids[1]]
    assert [t["id"] for t in store.list_traces(status="error")] == [ids[3]]
    assert [t["id"] for t in store.list_traces(since=base + 4)] == [ids[5], ids[4]]
    assert [t["id"] for t in store.list_traces(model="big", since=base + 2, status="ok")] == [ids[5]]
    assert store.count_traces() == 6


def test_get_by_unique_prefix(store: Store) -> None:
    a, b = make_trace(id="abc" + "0" * 29), make_trace(id="abd" + "0" * 29)
    store.insert_traces([a, b])
    assert store.get_trace("abc")["id"] == a["id"]  # type: ignore[index]
    assert store.get_trace("ABD")["id"] == b["id"]  # type: ignore[index]
    assert store.get_trace("ab") is None  # ambiguous
    assert store.get_trace("ff") is None
    assert store.get_trace("a_") is None  # not a prefix pattern
    assert store.get_trace("") is None


def test_a_batch_larger_than_one_statement(store: Store) -> None:
    assert store.insert_traces([make_trace() for _ in range(2500)]) == 2500
    assert store.count_traces() == 2500


def test_data_the_database_refuses_is_not_retryable(store: Store) -> None:
    with pytest.raises(StoreError) as caught:
        store.insert_traces([make_trace(started_at=None)])
    assert caught.value.retryable is False  # type: ignore[attr-defined]
    assert store.count_traces() == 0


# --- failures -------------------------------------------------------------------------------


@pytest.mark.postgres
def test_unreachable_postgres_says_where_and_what_to_do() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://keel:s3cret@127.0.0.1:1/traces")
    message = str(caught.value)
    assert "cannot connect to the trace store at postgresql+psycopg://keel:***@127.0.0.1:1/traces" in message
    assert "Start the database or set KEEL_STORE_URL" in message
    assert "s3cret" not in message
    assert caught.value.retryable is True  # type: ignore[attr-defined]


def test_sqlite_path_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(StoreError, match="cannot create the directory of the trace store at sqlite:///"):
        open_store(f"sqlite:///{tmp_path / 'file' / 'keel.db'}")


@pytest.mark.parametrize("url", ["mysql://localhost/keel", "not a url", "postgresql://u:s3cret@host:port/db"])
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(StoreError, match="KEEL_STORE_URL") as caught:
        open_store(url)
    assert "s3cret" not in str(caught.value)


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'keel.db'}") as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0


def test_head_revision_read_from_file_names_is_alembics_head() -> None:
    assert migrate.head_revision() == ScriptDirectory.from_config(Config(str(migrate.INI))).get_current_head()


def test_opening_a_migrated_store_does_not_import_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'k.db'}"
    code = f"from keel.store import open_store; open_store({url!r}).close(); import sys; print('alembic' in sys.modules)"
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (first.stdout.strip(), again.stdout.strip()) == ("True", "False")
