"""Ordered, named migrations (Alembic), recorded in `alembic_version` and run when a store opens.

Several processes may open a fresh store at once (gateway workers): the upgrade runs in one
transaction that first takes a database-wide lock, so the others wait and then find it done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

INI = Path(__file__).with_name("alembic.ini")
_PG_LOCK_KEY = 0x6B65656C  # "keel": the advisory lock that serialises upgrades


@cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(Config(str(INI))).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to `revision` (default: the newest)."""
    with _locked(engine) as connection:
        if revision == "head" and current_revision(connection) == head_revision():
            return
        command.upgrade(_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to `revision` ("base" removes every table)."""
    with _locked(engine) as connection:
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
    config = Config(str(INI))
    config.attributes["connection"] = connection
    return config
