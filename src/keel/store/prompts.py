"""The prompt registry: content-addressed versions, movable labels, and the history of every move.

Functions over an engine, which `Store` exposes as methods (turning database errors into
StoreError). A label move reads the label's current version and writes the new one under a lock:
the row lock of SELECT … FOR UPDATE on PostgreSQL, SQLite's write lock (BEGIN IMMEDIATE) on
SQLite. So concurrent moves queue up, and in the history each move's `old_version` is the
previous move's `new_version`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, Table, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import PromptNotFound, StoreError
from .schema import prompt_label_moves, prompt_labels, prompt_versions, traces

#: The shortest version prefix accepted in place of a full version.
MIN_PREFIX = 4
_LISTED = 5  # versions named when one is not found
_SHORT = 12  # characters of a version shown to people


def save_version(engine: Engine, name: str, version: str, definition: dict[str, Any], source_path: str | None) -> bool:
    """Record a version of a prompt. True if it was new; saving it again changes nothing."""
    version = version.lower()
    if not re.fullmatch("[0-9a-f]{64}", version):
        raise ValueError(f"a prompt version is a sha256 in 64 hex characters, not {version!r}")
    row = {"name": name, "version": version, "definition": definition, "source_path": source_path,
           "created_at": time.time()}
    statement = _insert_new(engine, prompt_versions, row)
    with engine.begin() as connection:
        return connection.execute(statement).first() is not None


def get_version(engine: Engine, name: str, version: str) -> dict[str, Any] | None:
    """The version given in full or by a unique prefix of at least MIN_PREFIX characters."""
    with engine.connect() as connection:
        rows = _matching(connection, name, version)
    return dict(rows[0]._mapping) if len(rows) == 1 else None


def list_versions(engine: Engine, name: str | None) -> list[dict[str, Any]]:
    """Every version (of one prompt, or of all), newest first."""
    columns = prompt_versions.c
    query = select(prompt_versions).order_by(columns.created_at.desc(), columns.name, columns.version)
    if name is not None:
        query = query.where(columns.name == name)
    return _all(engine, query)


def set_label(engine: Engine, name: str, label: str, version: str, actor: str, reason: str | None) -> str | None:
    """Point `label` at `version` (full, or a unique prefix) and record the move; returns the
    version it pointed at before (None if it is new). Pointing it where it points is a no-op."""
    with _write_transaction(engine) as connection:
        new_version = _resolve(connection, name, version)
        fields = {"version": new_version, "moved_at": time.time(), "actor": actor, "reason": reason}
        old_version = _move(connection, name, label, fields)
        if old_version != new_version:
            move = {"name": name, "label": label, "old_version": old_version, "new_version": new_version,
                    "moved_at": fields["moved_at"], "actor": actor, "reason": reason}
            connection.execute(insert(prompt_label_moves).values(move))
    return old_version


def get_label(engine: Engine, name: str, label: str) -> str | None:
    query = select(prompt_labels.c.version).where(_label_is(name, label))
    with engine.connect() as connection:
        return connection.execute(query).scalar_one_or_none()


def labels(engine: Engine, name: str) -> dict[str, str]:
    """Each label of the prompt and the version it points at."""
    query = select(prompt_labels.c.label, prompt_labels.c.version).where(prompt_labels.c.name == name)
    with engine.connect() as connection:
        return {label: version for label, version in connection.execute(query.order_by(prompt_labels.c.label))}


def label_history(engine: Engine, name: str, label: str | None) -> list[dict[str, Any]]:
    """The moves of the prompt's labels (or of one), newest first."""
    columns = prompt_label_moves.c
    query = select(prompt_label_moves).where(columns.name == name).order_by(columns.moved_at.desc(), columns.id.desc())
    if label is not None:
        query = query.where(columns.label == label)
    return _all(engine, query)


def call_stats(engine: Engine, name: str, since: float | None) -> dict[str, Any]:
    """How many traced calls used the prompt, how many of them saw model drift, and per version
    (calls whose version is unknown count in `calls` only)."""
    drifted = func.sum(case((traces.c.model_drift.is_(True), 1), else_=0))
    query = (
        select(traces.c.prompt_version, func.count(), drifted)
        .where(traces.c.prompt_name == name)
        .group_by(traces.c.prompt_version)
        .order_by(func.count().desc(), traces.c.prompt_version)
    )
    if since is not None:
        query = query.where(traces.c.started_at >= since)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return {
        "calls": sum(count for _, count, _ in rows),
        "drift_calls": sum(int(drift or 0) for _, _, drift in rows),
        "by_version": {version: count for version, count, _ in rows if version is not None},
    }


@contextmanager
def _write_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # Take the write lock before reading: a deferred transaction would read, then fail to
            # upgrade its lock (instead of waiting) when another writer got there in between.
            connection.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        with connection.begin():
            yield connection


def _move(connection: Connection, name: str, label: str, fields: dict[str, Any]) -> str | None:
    """Point the label as `fields` say, under a lock on its row; returns where it pointed before."""
    for _ in range(3):
        locked = select(prompt_labels.c.version).where(_label_is(name, label)).with_for_update()
        old_version = connection.execute(locked).scalar_one_or_none()
        if old_version is not None:
            if old_version != fields["version"]:
                connection.execute(update(prompt_labels).where(_label_is(name, label)).values(fields))
            return old_version
        created = _insert_new(connection, prompt_labels, fields | {"name": name, "label": label})
        if connection.execute(created).first() is not None:
            return None
        # Another transaction created the label since the SELECT: lock its row and move it.
    raise StoreError(f"cannot move the label {label!r} of prompt {name!r}: it keeps changing", retryable=True)


def _resolve(connection: Connection, name: str, version: str) -> str:
    """The full version `version` names, or PromptNotFound listing the prompt's latest versions."""
    rows = _matching(connection, name, version)
    if len(rows) == 1:
        return str(rows[0].version)
    query = select(prompt_versions.c.version).where(prompt_versions.c.name == name)
    query = query.order_by(prompt_versions.c.created_at.desc()).limit(_LISTED)
    latest = [v[:_SHORT] for v in connection.execute(query).scalars()]
    problem = "matches several versions" if rows else "is not a saved version"
    listing = f"its latest versions: {', '.join(latest)}" if latest else "it has no saved versions"
    raise PromptNotFound(f"{version!r} {problem} of prompt {name!r}; {listing}.", name=name, version=version, latest=latest)


def _matching(connection: Connection, name: str, version: str) -> list[Row[Any]]:
    """The version itself, or up to two versions starting with it (a prefix of MIN_PREFIX or more)."""
    key = version.strip().lower()
    query = select(prompt_versions).where(prompt_versions.c.name == name)
    row = connection.execute(query.where(prompt_versions.c.version == key)).first()
    if row is not None:
        return [row]
    if len(key) < MIN_PREFIX or not re.fullmatch("[0-9a-f]+", key):
        return []
    return list(connection.execute(query.where(prompt_versions.c.version.startswith(key)).limit(2)).all())


def _label_is(name: str, label: str) -> Any:
    return (prompt_labels.c.name == name) & (prompt_labels.c.label == label)


def _insert_new(bind: Engine | Connection, table: Table, row: dict[str, Any]) -> Any:
    """INSERT the row unless its primary key is taken; it returns a row only if it inserted.
    (RETURNING, because SQLAlchemy does not keep the rowcount of an INSERT on every driver.)"""
    insert_into = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert
    return insert_into(table).values(row).on_conflict_do_nothing().returning(*table.primary_key.columns)


def _all(engine: Engine, query: Select[Any]) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]
