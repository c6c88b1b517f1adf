"""Eval runs and their results behind `Store`: one row per run, one per answer.

A run is written as `running` first; each answer is saved as soon as it is scored, so an
interrupted run can be resumed by skipping the answers already saved.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Engine, literal, select, true, update
from sqlalchemy.dialects import postgresql, sqlite

from .prompts import _insert_new
from .schema import eval_results, eval_runs

RESULT_KEY = ("case_id", "model", "prompt", "repeat")
#: Answers are saved in batches: the statement is built once.
_INSERT_NEW = {name: dialect.insert(eval_results).on_conflict_do_nothing()
               for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))}
_SQLITE_RESULTS = "SELECT {} FROM eval_results WHERE run_id = ? ORDER BY prompt, model, case_id, repeat".format(
    ", ".join(f'"{column.name}"' for column in eval_results.columns))
_SQLITE_INSERT = "INSERT INTO eval_results ({}) VALUES ({}) ON CONFLICT DO NOTHING".format(
    ", ".join(f'"{column.name}"' for column in eval_results.columns), ", ".join("?" for _ in eval_results.columns))


def create_run(engine: Engine, run_id: str, suite: str, suite_hash: str, config: dict[str, Any]) -> None:
    row = {"id": run_id, "suite": suite, "suite_hash": suite_hash, "started_at": time.time(),
           "finished_at": None, "status": "running", "config": config, "summary": None}
    with engine.begin() as connection:
        connection.execute(eval_runs.insert().values(row))


def finish_run(engine: Engine, run_id: str, status: str, summary: dict[str, Any] | None) -> None:
    values: dict[str, Any] = {"status": status, "finished_at": time.time() if status == "finished" else None}
    if summary is not None:
        values["summary"] = summary
    with engine.begin() as connection:
        connection.execute(update(eval_runs).where(eval_runs.c.id == run_id).values(values))


def get_run(engine: Engine, id_or_prefix: str) -> dict[str, Any] | None:
    """The run with this id, or with the only id starting with it."""
    key = id_or_prefix.strip().lower()
    if not key:
        return None
    with engine.connect() as connection:
        row = connection.execute(select(eval_runs).where(eval_runs.c.id == key)).first()
        if row is None:
            rows = connection.execute(select(eval_runs).where(eval_runs.c.id.startswith(key, autoescape=True)).limit(2)).all()
            row = rows[0] if len(rows) == 1 else None
    return dict(row._mapping) if row is not None else None


def list_runs(engine: Engine, suite: str | None, limit: int) -> list[dict[str, Any]]:
    query = select(eval_runs).order_by(eval_runs.c.started_at.desc(), eval_runs.c.id).limit(limit)
    if suite is not None:
        query = query.where(eval_runs.c.suite == suite)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def unfinished_run(engine: Engine, suite: str, suite_hash: str) -> dict[str, Any] | None:
    """The newest run of this suite, at this content hash, that did not finish."""
    c = eval_runs.c
    return _newest(engine, suite, suite_hash, c.started_at, c.status != "finished")


def reusable_run(engine: Engine, suite: str, suite_hash: str, since: float) -> dict[str, Any] | None:
    """The newest run of this suite, at this content hash, that finished after `since`."""
    c = eval_runs.c
    return _newest(engine, suite, suite_hash, c.finished_at, c.status == "finished", c.finished_at > since)


def _newest(engine: Engine, suite: str, suite_hash: str, by: Any, *where: Any) -> dict[str, Any] | None:
    c = eval_runs.c
    query = select(eval_runs).where(c.suite == suite, c.suite_hash == suite_hash, *where).order_by(by.desc()).limit(1)
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return dict(row._mapping) if row is not None else None


def copy_results(engine: Engine, source: str, target: str) -> int:
    """Copy the answers of run `source` that did not fail into run `target`, marked `cached`, in
    one statement; how many."""
    c = eval_results.c
    carried = {"run_id": literal(target), "created_at": literal(time.time()), "cached": true()}
    columns = [carried.get(column.name, column) for column in eval_results.columns]
    query = select(*columns).where(c.run_id == source, c.error.is_(None))
    with engine.begin() as connection:
        copy = eval_results.insert().from_select(list(eval_results.columns), query).returning(eval_results.c.case_id)
        return len(connection.execute(copy).all())


def save_result(engine: Engine, result: dict[str, Any]) -> bool:
    """Save one answer; an answer already saved for the same key is kept. True if it was new."""
    with engine.begin() as connection:
        return connection.execute(_insert_new(connection, eval_results, _row(result))).first() is not None


def save_results(engine: Engine, results: list[dict[str, Any]]) -> None:
    """Save answers in one transaction; an answer already saved for the same key is kept."""
    if not results:
        return
    if engine.dialect.name == "sqlite":
        _save_results_sqlite(engine, results)
        return
    with engine.begin() as connection:
        connection.execute(_INSERT_NEW[engine.dialect.name], [_row(r) for r in results])


def _save_results_sqlite(engine: Engine, results: list[dict[str, Any]]) -> None:
    """The same insert through the driver's executemany: SQLAlchemy's per-row bind processing
    costs more than SQLite's insert, and holds the interpreter lock the event loop needs.
    Documents are serialised as the engine does (JSON text; None as SQL NULL)."""
    serialize = engine.dialect._json_serializer  # type: ignore[attr-defined]
    documents = [isinstance(column.type, JSON) for column in eval_results.columns]
    rows = [tuple(None if value is None else serialize(value) if document else value
                  for value, document in zip(_row(r).values(), documents, strict=True)) for r in results]
    with engine.begin() as connection:
        connection.exec_driver_sql(_SQLITE_INSERT, rows)


def _row(result: dict[str, Any]) -> dict[str, Any]:
    row = {column.name: result.get(column.name) for column in eval_results.columns}
    row["created_at"] = row["created_at"] or time.time()
    if isinstance(row["cost"], Decimal):
        row["cost"] = str(row["cost"])
    return row


def results(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    if engine.dialect.name == "sqlite":
        return _results_sqlite(engine, run_id)
    c = eval_results.c
    query = select(eval_results).where(c.run_id == run_id).order_by(c.prompt, c.model, c.case_id, c.repeat)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def _results_sqlite(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The same query through the driver, decoded as the engine does (JSON documents, booleans):
    a fifth of the time of SQLAlchemy's row processing, which a re-run waits for."""
    names = [column.name for column in eval_results.columns]
    decoders = [_sqlite_decoder(engine, column.type) for column in eval_results.columns]
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(_SQLITE_RESULTS, (run_id,)).fetchall()
    return [{name: value if value is None or decode is None else decode(value)
             for name, value, decode in zip(names, row, decoders, strict=True)} for row in rows]


def _sqlite_decoder(engine: Engine, kind: Any) -> Any:
    if isinstance(kind, JSON):
        return engine.dialect._json_deserializer  # type: ignore[attr-defined]
    return bool if isinstance(kind, Boolean) else None
