"""The response cache table behind `Store`, on SQLite and PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

import time

from sqlalchemy import Engine, inspect, text

from keel.store import Store, migrate, open_store

VALUE = bytes(range(256)) * 4  # any bytes, not only text


def test_a_value_round_trips_as_bytes(store: Store) -> None:
    assert store.cache_get("k", time.time()) is None
    store.cache_set("k", VALUE, time.time() + 60)
    assert store.cache_get("k", time.time()) == VALUE


def test_setting_a_key_again_replaces_value_and_expiry(store: Store) -> None:
    now = time.time()
    store.cache_set("k", b"old", now + 1)
    store.cache_set("k", b"new", now + 100)
    assert store.cache_get("k", now + 50) == b"new"
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM response_cache")).scalar_one() == 1


def test_an_expired_entry_is_not_returned_then_purged(store: Store) -> None:
    now = time.time()
    store.cache_set("old", b"1", now - 1)
    store.cache_set("fresh", b"2", now + 60)
    assert store.cache_get("old", now) is None
    assert store.cache_get("fresh", now) == b"2"
    assert store.cache_purge(now) == 1
    assert store.cache_purge(now) == 0
    assert store.cache_get("fresh", now) == b"2"
    assert store.cache_get("fresh", now + 61) is None


def test_downgrade_below_the_cache_keeps_the_traces(store: Store, store_url: str) -> None:
    store.cache_set("k", b"v", time.time() + 60)
    store.insert_traces([{"id": "f" * 32, "started_at": 1.0, "model": "m", "tags": {"a": 1}}])
    migrate.downgrade(store.engine, "0002")
    with store.engine.connect() as connection:
        assert "response_cache" not in inspect(connection).get_table_names()
    with open_store(store_url) as reopened:
        assert reopened.count_traces() == 1
        assert reopened.cache_get("k", time.time()) is None


def test_upgrade_from_0003_keeps_cache_entries(engine: Engine, store_url: str) -> None:
    migrate.upgrade(engine, "0003")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO response_cache (key, value, created_at, expires_at) "
                                "VALUES ('k', :value, 1.0, 9e18)"), {"value": VALUE})
    with open_store(store_url) as store:
        assert store.cache_get("k", time.time()) == VALUE
