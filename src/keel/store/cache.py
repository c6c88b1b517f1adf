"""The response cache table: encoded answers by request key, each with an expiry time.

Functions over an engine, which `Store` exposes as methods (turning database errors into
StoreError). An expired row is never returned; `purge` deletes expired rows (the cache calls it
now and then, not on every read). Writing a key again replaces its value and expiry.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from .schema import response_cache

_COLUMNS = response_cache.c


def get(engine: Engine, key: str, now: float) -> bytes | None:
    """The value stored under `key`, unless it expired by `now` (or there is none)."""
    query = select(_COLUMNS.value).where(_COLUMNS.key == key, _COLUMNS.expires_at > now)
    with engine.connect() as connection:
        value = connection.execute(query).scalar_one_or_none()
    return None if value is None else bytes(value)


def put(engine: Engine, key: str, value: bytes, expires_at: float) -> None:
    """Store `value` under `key` until `expires_at`, replacing what was there."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(response_cache).values(
        key=key, value=value, created_at=time.time(), expires_at=expires_at
    )
    replaced = {name: statement.excluded[name] for name in ("value", "created_at", "expires_at")}
    statement = statement.on_conflict_do_update(index_elements=[_COLUMNS.key], set_=replaced)
    with engine.begin() as connection:
        connection.execute(statement)


def purge(engine: Engine, now: float) -> int:
    """Delete the rows expired by `now`; how many were deleted."""
    with engine.begin() as connection:
        return connection.execute(delete(response_cache).where(_COLUMNS.expires_at <= now)).rowcount
