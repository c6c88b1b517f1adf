"""The response cache table: encoded answers by request key, each with an expiry time.

Functions over an engine, which `Store` exposes as methods (turning database errors into
StoreError). An expired row is never returned; `purge` deletes expired rows (the cache calls it
now and then, not on every read). Writing a key again replaces its value and expiry.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from .schema import response_cache

_COLUMNS = response_cache.c
#: Keys per SELECT … IN (well under SQLite's limit on bound parameters).
_KEYS_PER_QUERY = 500
# Built once: building a statement per call costs more than running it.
_GET_MANY = select(_COLUMNS.key, _COLUMNS.value).where(
    _COLUMNS.key.in_(bindparam("keys", expanding=True)), _COLUMNS.expires_at > bindparam("now"))


def get(engine: Engine, key: str, now: float) -> bytes | None:
    """The value stored under `key`, unless it expired by `now` (or there is none)."""
    query = select(_COLUMNS.value).where(_COLUMNS.key == key, _COLUMNS.expires_at > now)
    with engine.connect() as connection:
        value = connection.execute(query).scalar_one_or_none()
    return None if value is None else bytes(value)


def get_many(engine: Engine, keys: list[str], now: float) -> dict[str, bytes]:
    """The values stored under `keys` that have not expired by `now`, by key (absent: none)."""
    found: dict[str, bytes] = {}
    with engine.connect() as connection:
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start:start + _KEYS_PER_QUERY]
            found.update((key, bytes(value)) for key, value in connection.execute(_GET_MANY, {"keys": chunk, "now": now}))
    return found


def put(engine: Engine, key: str, value: bytes, expires_at: float) -> None:
    """Store `value` under `key` until `expires_at`, replacing what was there."""
    put_many(engine, [(key, value, expires_at)])


def put_many(engine: Engine, entries: list[tuple[str, bytes, float]]) -> None:
    """Store each (key, value, expires_at), replacing what was there, in one transaction."""
    if not entries:
        return
    now = time.time()
    rows = {key: {"key": key, "value": value, "created_at": now, "expires_at": expires_at}
            for key, value, expires_at in entries}  # a key written twice: the last value wins
    with engine.begin() as connection:
        connection.execute(_UPSERT[engine.dialect.name], list(rows.values()))


def _upsert(dialect: Any) -> Any:
    statement = dialect.insert(response_cache)
    replaced = {name: statement.excluded[name] for name in ("value", "created_at", "expires_at")}
    return statement.on_conflict_do_update(index_elements=[_COLUMNS.key], set_=replaced)


_UPSERT = {"sqlite": _upsert(sqlite), "postgresql": _upsert(postgresql)}


def purge(engine: Engine, now: float) -> int:
    """Delete the rows expired by `now`; how many were deleted."""
    with engine.begin() as connection:
        return connection.execute(delete(response_cache).where(_COLUMNS.expires_at <= now)).rowcount
