"""The trace store: SQLAlchemy Core over SQLite or PostgreSQL, through one code path.

Writes go through `insert_trace_jsonl`: a batch of JSON lines becomes one statement that lets the
database unpack the rows (`json_each` on SQLite, `json_populate_recordset` on PostgreSQL), so a
batch of a thousand traces costs one round trip and no per-row Python work.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic.util import CommandError
from sqlalchemy import JSON, Engine, TextClause, create_engine, event, func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DataError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from ..errors import StoreError
from . import migrate
from .schema import traces

SQLITE_BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 5
_CHUNK_BYTES = 1 << 20  # JSON per INSERT statement


def open_store(url: str) -> Store:
    """Open the store at `url` (sqlite:///path or postgresql://…), migrating it to the newest schema."""
    engine = create_store_engine(url)
    shown = _shown(engine.url)
    try:
        with _failures(f"cannot connect to the trace store at {shown}", engine.url):
            engine.connect().close()
        with _failures(f"cannot migrate the trace store at {shown}", engine.url):
            migrate.upgrade(engine)
    except CommandError as exc:
        engine.dispose()
        raise StoreError(
            f"cannot migrate the trace store at {shown}: {exc}. It was probably written by a newer "
            f"Keel (this one knows up to revision {migrate.head_revision()}): upgrade Keel or set "
            "KEEL_STORE_URL to another database.",
            url=shown,
            retryable=False,
        ) from exc
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)


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
        raise StoreError(f"cannot use the trace store at {_shown(parsed)}: {exc}. For PostgreSQL "
                         "install the driver: pip install 'keel[postgres]'.", url=_shown(parsed)) from exc
    raise StoreError(f"unsupported trace store URL {_shown(parsed)}: use sqlite:///path/keel.db or "
                     "postgresql://user@host/db in KEEL_STORE_URL.", url=_shown(parsed))


class Store:
    """Traces in a SQL database. Thread-safe: every method takes its own pooled connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: The URL with any password hidden, for messages.
        self.url = _shown(engine.url)
        self._bulk_insert = _bulk_insert_statement(engine)

    def insert_traces(self, records: Iterable[dict[str, Any]]) -> int:
        """Insert trace records; ids already present are skipped. Returns how many were new."""
        return self.insert_trace_jsonl(b"".join(_json_line(record) for record in records))

    def insert_trace_jsonl(self, jsonl: bytes | bytearray) -> int:
        """Insert traces given as JSON lines (the journal's format). Returns how many were new.

        Raises StoreError with `retryable=False` when the database rejects the data itself.
        """
        inserted = 0
        with self._failures("cannot write to"), self.engine.begin() as connection:
            for chunk in _chunks(jsonl):
                rows = b"[" + chunk.rstrip(b"\n").replace(b"\n", b",") + b"]"
                inserted += connection.execute(self._bulk_insert, {"rows": rows.decode()}).rowcount
        return inserted

    def list_traces(
        self, *, model: str | None = None, status: str | None = None, since: float | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The newest traces first, optionally only one model's, one status', or those started since."""
        query = select(traces).order_by(traces.c.started_at.desc(), traces.c.id.desc()).limit(limit)
        if model is not None:
            query = query.where(traces.c.model == model)
        if status is not None:
            query = query.where(traces.c.status == status)
        if since is not None:
            query = query.where(traces.c.started_at >= since)
        with self._failures("cannot read from"), self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def get_trace(self, id_or_prefix: str) -> dict[str, Any] | None:
        """The trace with this id, or with the only id starting with it. None if none or ambiguous."""
        key = id_or_prefix.strip().lower()
        if not key:
            return None
        with self._failures("cannot read from"), self.engine.connect() as connection:
            row = connection.execute(select(traces).where(traces.c.id == key)).first()
            if row is None and _is_hex(key):
                query = select(traces).where(traces.c.id.startswith(key, autoescape=True)).limit(2)
                rows = connection.execute(query).all()
                row = rows[0] if len(rows) == 1 else None
        return dict(row._mapping) if row is not None else None

    def count_traces(self) -> int:
        with self._failures("cannot read from"), self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(traces)).scalar_one()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _failures(self, action: str) -> Any:
        return _failures(f"{action} the trace store at {self.url}", self.engine.url)


@contextmanager
def _failures(what: str, url: URL) -> Iterator[None]:
    """Turn database and file-system errors into StoreError: what failed, why, and what to do."""
    try:
        yield
    except (IntegrityError, DataError) as exc:
        reason = _reason(exc, url)
        raise StoreError(f"{what}: the database rejected the data: {reason}", url=_shown(url), retryable=False) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise StoreError(f"{what}: {_reason(exc, url)}. {_fix(url)}", url=_shown(url), retryable=True) from exc


def _bulk_insert_statement(engine: Engine) -> TextClause:
    """INSERT … SELECT from one JSON array parameter; existing ids are skipped on both dialects."""
    quote = engine.dialect.identifier_preparer.quote
    table, names = quote(traces.name), [column.name for column in traces.columns]
    columns = ", ".join(quote(name) for name in names)
    if engine.dialect.name == "postgresql":
        source = f"SELECT {columns} FROM json_populate_recordset(NULL::{table}, CAST(:rows AS json))"
    else:
        documents = {c.name for c in traces.columns if isinstance(c.type, JSON)}
        # Documents as JSON text (SQL NULL for null or missing); scalars as SQL values.
        values = ", ".join(
            f"NULLIF(json_quote(json_extract(value, '$.{name}')), 'null')" if name in documents
            else f"json_extract(value, '$.{name}')"
            for name in names
        )
        # "WHERE true" keeps SQLite's parser from reading ON CONFLICT as part of the SELECT.
        source = f"SELECT {values} FROM json_each(:rows) WHERE true"
    return text(f"INSERT INTO {table} ({columns}) {source} ON CONFLICT ({quote('id')}) DO NOTHING")


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
        raise StoreError(f"cannot create the directory of the trace store at {_shown(url)}: {exc}. "
                         "Check the path or set KEEL_STORE_URL.", url=_shown(url), retryable=True) from exc


def _fix(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return "Check that the file and its directory exist and are writable, or set KEEL_STORE_URL."
    return "Start the database or set KEEL_STORE_URL."


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _reason(exc: BaseException, url: URL) -> str:
    detail = str(getattr(exc, "orig", None) or exc).strip()
    first = detail.splitlines()[0] if detail else type(exc).__name__
    return first.replace(url.password, "***") if url.password else first


def _is_hex(value: str) -> bool:
    return all(c in "0123456789abcdef" for c in value)


def _json_line(value: Any) -> bytes:
    return orjson.dumps(value, default=str, option=orjson.OPT_APPEND_NEWLINE)


def _chunks(jsonl: bytes | bytearray) -> Iterator[bytes | bytearray]:
    """Slices of about _CHUNK_BYTES, each ending at a line end: one INSERT statement each."""
    start, size = 0, len(jsonl)
    while start < size:
        end = jsonl.find(b"\n", min(start + _CHUNK_BYTES, size - 1))
        end = size if end == -1 else end + 1
        yield jsonl[start:end]
        start = end


def _json_text(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()
