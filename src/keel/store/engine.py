"""Engines with Keel's settings: SQLite in WAL mode with a busy timeout, psycopg 3 for PostgreSQL."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ..errors import StoreError

SQLITE_BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 5


def create_store_engine(url: str) -> Engine:
    """An engine with Keel's settings: SQLite in WAL mode with a busy timeout; psycopg 3 for PostgreSQL."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
        raise StoreError(f"invalid trace store URL {shown!r}: use sqlite:///path/keel.db or "
                         "postgresql://user@host/db in KEEL_STORE_URL.", url=shown) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    options: dict[str, Any] = {"json_serializer": _json_text, "json_deserializer": orjson.loads}
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            _make_parent_dir(parsed)
            engine = create_engine(parsed, **options)
            _configure_sqlite(engine)
            return engine
        if backend == "postgresql":
            connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
            return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args, **options)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"cannot use the trace store at {shown_url(parsed)}: {exc}. For PostgreSQL "
                         "install the driver: pip install 'keel[postgres]'.", url=shown_url(parsed)) from exc
    raise StoreError(f"unsupported trace store URL {shown_url(parsed)}: use sqlite:///path/keel.db or "
                     "postgresql://user@host/db in KEEL_STORE_URL.", url=shown_url(parsed))


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite would otherwise open transactions itself and never around DDL; SQLAlchemy
        # emits BEGIN below instead, so migrations are transactional too.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}", "synchronous=NORMAL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        _enable_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get("sqlite_begin", "BEGIN"))


def _enable_wal(cursor: Any) -> None:
    """Switch to WAL (it persists in the file). Openers racing on a fresh file get "database is
    locked" at once, without the busy timeout: wait and retry."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _make_parent_dir(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("uri") == "true":
        return
    try:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the directory of the trace store at {shown_url(url)}: {exc}. "
                         "Check the path or set KEEL_STORE_URL.", url=shown_url(url), retryable=True) from exc


def shown_url(url: URL) -> str:
    """The URL with any password hidden, for messages."""
    return url.render_as_string(hide_password=True)


def _json_text(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()
