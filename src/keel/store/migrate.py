"""Ordered, named migrations (Alembic), recorded in `alembic_version` and run when a store opens.

Several processes may open a fresh store at once (gateway workers): the upgrade runs in one
transaction that first takes a database-wide lock, so the others wait and then find it done.
Alembic is imported only when the store is not already at the newest revision: checking costs
one query, and every `keel` command opens a store (importing Alembic alone takes ~0.2 s).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

INI = Path(__file__).with_name("alembic.ini")
_PG_LOCK_KEY = 0x6B65656C  # "keel": the advisory lock that serialises upgrades
# Alembic's `context` and `op` proxies are process globals, so two of its commands running at
# once in one process (stores on different databases, opened from two threads) use each
# other's migration context: every call into `alembic.command` holds this lock.
_ALEMBIC_LOCK = threading.Lock()


class UnknownRevision(Exception):
    """The database is at a revision this Keel does not know (written by a newer Keel)."""


@cache
def head_revision() -> str:
    """The newest revision: migration files are named after their revision ("0005_eval_cached.py")."""
    return max(path.name.split("_", 1)[0] for path in (INI.parent / "migrations" / "versions").glob("[0-9]*_*.py"))


def current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to `revision` (default: the newest)."""
    with _locked(engine) as connection:
        if revision == "head" and current_revision(connection) == head_revision():
            return
        from alembic import command
        from alembic.util import CommandError

        try:
            with _ALEMBIC_LOCK:
                command.upgrade(_config(connection), revision)
        except CommandError as exc:
            raise UnknownRevision(str(exc)) from exc


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to `revision` ("base" removes every table)."""
    from alembic import command

    with _locked(engine) as connection, _ALEMBIC_LOCK:
        command.downgrade(_config(connection), revision)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that holds the store's migration lock."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # Take SQLite's write lock up front: a deferred transaction that reads the version
            # and then writes would fail instead of waiting when another opener got there first.
            connection.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            yield connection


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config(str(INI))
    config.attributes["connection"] = connection
    return config
