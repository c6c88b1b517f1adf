"""The store: SQLAlchemy Core over SQLite or PostgreSQL, through one code path.

Writes go through `insert_trace_jsonl`: a batch of JSON lines becomes one statement that lets the
database unpack the rows (`json_each` on SQLite, `json_populate_recordset` on PostgreSQL), so a
batch of a thousand traces costs one round trip and no per-row Python work.

The prompt registry's methods delegate to `prompts.py`, the eval runs' to `evals.py`, the
response cache's to `cache.py`, the cost report's (sums in SQL) to `cost_query.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson
from sqlalchemy import JSON, Engine, TextClause, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from ..errors import StoreError
from . import cache, cost_query, evals, migrate, prompts
from .engine import create_store_engine, shown_url
from .schema import traces

_CHUNK_BYTES = 1 << 20  # JSON per INSERT statement
_T = TypeVar("_T")


def open_store(url: str) -> Store:
    """Open the store at `url` (sqlite:///path or postgresql://…), migrating it to the newest schema."""
    engine = create_store_engine(url)
    shown = shown_url(engine.url)
    try:
        with _failures(f"cannot connect to the trace store at {shown}", engine.url):
            engine.connect().close()
        with _failures(f"cannot migrate the trace store at {shown}", engine.url):
            migrate.upgrade(engine)
    except migrate.UnknownRevision as exc:
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


class Store:
    """Traces, the prompt registry and eval runs in a SQL database. Thread-safe: every method takes its own pooled connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: The URL with any password hidden, for messages.
        self.url = shown_url(engine.url)
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
        self, *, model: str | None = None, status: str | None = None, since: float | None = None,
        prompt: str | None = None, drift: bool | None = None, limit: int = 50,
    ) -> list[dict[str, Any]]:
        """The newest traces first, optionally only one model's, one status', those started since,
        one prompt's (by name), or those that did (drift=True) or did not (False: including
        unknown) see the model differ from the one keel.lock pins."""
        query = select(traces).order_by(traces.c.started_at.desc(), traces.c.id.desc()).limit(limit)
        for column, value in ((traces.c.model, model), (traces.c.status, status), (traces.c.prompt_name, prompt)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(traces.c.started_at >= since)
        if drift is not None:
            query = query.where(traces.c.model_drift.is_(True) if drift else traces.c.model_drift.is_not(True))
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

    # Cost reports: see keel.store.cost_query.

    def cost_totals(
        self, by: Sequence[str], *, since: float | None = None, tags: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Calls, tokens, the exact sum of the known costs and the number of calls of unknown cost,
        per group of `by` (model, provider, prompt, status, day, week, month (UTC), tag:NAME),
        summed by the database, of the calls started since `since` that carry `tags`."""
        return self._read(cost_query.totals, by, since, tags)

    def trace_tag_names(self, *, since: float | None = None, tags: Mapping[str, str] | None = None) -> list[str]:
        """The tag names carried by the calls started since `since` that carry `tags`, sorted."""
        return self._read(cost_query.tag_names, since, tags)

    # The prompt registry: see keel.store.prompts.

    def save_prompt_version(
        self, name: str, version: str, definition: dict[str, Any], source_path: str | None = None
    ) -> bool:
        """Record a version of a prompt (version: its 64-hex sha256). True if it was new."""
        return self._write(prompts.save_version, name, version, definition, source_path)

    def get_prompt_version(self, name: str, version: str) -> dict[str, Any] | None:
        """The version given in full or by a unique prefix of 4+ characters; None if none or ambiguous."""
        return self._read(prompts.get_version, name, version)

    def list_prompt_versions(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every saved version, of one prompt or of all, newest first."""
        return self._read(prompts.list_versions, name)

    def set_label(self, name: str, label: str, version: str, *, actor: str, reason: str | None = None) -> str | None:
        """Point the label at a saved version (or unique prefix) and record the move, in one
        transaction. Returns the version it pointed at before. Raises PromptNotFound."""
        return self._write(prompts.set_label, name, label, version, actor, reason)

    def get_label(self, name: str, label: str) -> str | None:
        """The version the label points at, or None."""
        return self._read(prompts.get_label, name, label)

    def labels(self, name: str) -> dict[str, str]:
        """Each label of the prompt and the version it points at."""
        return self._read(prompts.labels, name)

    def label_history(self, name: str, label: str | None = None) -> list[dict[str, Any]]:
        """The moves of the prompt's labels (or of one label), newest first."""
        return self._read(prompts.label_history, name, label)

    def prompt_call_stats(self, name: str, since: float | None = None) -> dict[str, Any]:
        """Traced calls of the prompt since `since`: {"calls", "drift_calls", "by_version"}."""
        return self._read(prompts.call_stats, name, since)

    # Eval runs and results: see keel.store.evals.

    def create_eval_run(self, run_id: str, suite: str, suite_hash: str, config: dict[str, Any]) -> None:
        """Record the start of an eval run (status `running`)."""
        self._write(evals.create_run, run_id, suite, suite_hash, config)

    def finish_eval_run(self, run_id: str, status: str, summary: dict[str, Any] | None = None) -> None:
        """Set a run's status (finished, interrupted, failed) and its summary."""
        self._write(evals.finish_run, run_id, status, summary)

    def get_eval_run(self, id_or_prefix: str) -> dict[str, Any] | None:
        """The run with this id or unique id prefix; None if none or ambiguous."""
        return self._read(evals.get_run, id_or_prefix)

    def list_eval_runs(self, suite: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The newest runs first, of one suite or of all."""
        return self._read(evals.list_runs, suite, limit)

    def unfinished_eval_run(self, suite: str, suite_hash: str) -> dict[str, Any] | None:
        """The newest run of the suite at this content hash that did not finish (to resume)."""
        return self._read(evals.unfinished_run, suite, suite_hash)

    def reusable_eval_run(self, suite: str, suite_hash: str, since: float) -> dict[str, Any] | None:
        """The newest run of the suite at this content hash that finished after `since` (to reuse)."""
        return self._read(evals.reusable_run, suite, suite_hash, since)

    def copy_eval_results(self, source: str, target: str) -> int:
        """Copy the answers of run `source` that did not fail into run `target`, marked cached."""
        return self._write(evals.copy_results, source, target)

    def save_eval_result(self, result: dict[str, Any]) -> bool:
        """Save one scored answer; one already saved under the same key is kept. True if new."""
        return self._write(evals.save_result, result)

    def save_eval_results(self, results: list[dict[str, Any]]) -> None:
        """Save scored answers in one transaction; those already saved under their key are kept."""
        self._write(evals.save_results, results)

    def eval_results(self, run_id: str) -> list[dict[str, Any]]:
        """Every saved answer of the run, ordered by prompt, model, case and repeat."""
        return self._read(evals.results, run_id)

    # The response cache: see keel.store.cache.

    def cache_get(self, key: str, now: float) -> bytes | None:
        """The cached value under `key`, unless it expired by `now`."""
        return self._read(cache.get, key, now)

    def cache_set(self, key: str, value: bytes, expires_at: float) -> None:
        """Cache `value` under `key` until `expires_at` (epoch seconds), replacing any entry."""
        self._write(cache.put, key, value, expires_at)

    def cache_get_many(self, keys: list[str], now: float) -> dict[str, bytes]:
        """The cached values under `keys` that have not expired by `now`, by key."""
        return self._read(cache.get_many, keys, now)

    def cache_set_many(self, entries: list[tuple[str, bytes, float]]) -> None:
        """Cache each (key, value, expires_at) in one transaction, replacing any entries."""
        self._write(cache.put_many, entries)

    def cache_purge(self, now: float) -> int:
        """Delete the entries expired by `now`; returns how many."""
        return self._write(cache.purge, now)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _read(self, function: Callable[..., _T], *args: Any) -> _T:
        with self._failures("cannot read from"):
            return function(self.engine, *args)

    def _write(self, function: Callable[..., _T], *args: Any) -> _T:
        with self._failures("cannot write to"):
            return function(self.engine, *args)

    def _failures(self, action: str) -> Any:
        return _failures(f"{action} the trace store at {self.url}", self.engine.url)


@contextmanager
def _failures(what: str, url: URL) -> Iterator[None]:
    """Turn database and file-system errors into StoreError: what failed, why, and what to do."""
    try:
        yield
    except (IntegrityError, DataError) as exc:
        reason = _reason(exc, url)
        raise StoreError(f"{what}: the database rejected the data: {reason}", url=shown_url(url), retryable=False) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise StoreError(f"{what}: {_reason(exc, url)}. {_fix(url)}", url=shown_url(url), retryable=True) from exc


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


def _fix(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return "Check that the file and its directory exist and are writable, or set KEEL_STORE_URL."
    return "Start the database or set KEEL_STORE_URL."


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
