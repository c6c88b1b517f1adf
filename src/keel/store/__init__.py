"""Keel's store: traces and the prompt registry (and, later, eval runs, budgets) in SQLite or PostgreSQL.

    schema.py          the tables (SQLAlchemy Core), the current shape
    migrations/        Alembic revisions that build that shape, run by `open_store`
    migrate.py         running them programmatically, with a lock against concurrent openers
    engine.py          engines with Keel's settings (SQLite WAL and busy timeout, psycopg 3)
    sql.py             `Store`: reads and writes over one engine, for both dialects
    prompts.py         the prompt registry behind `Store`: versions, labels, the history of moves
    cache.py           the response cache table behind `Store` (keel.cache uses it)
    testing.py         for tests: throw-away PostgreSQL databases, a proxy that cuts one off

Importing this package imports SQLAlchemy: `import keel` does not import it.
"""

from __future__ import annotations

from .sql import Store as Store
from .engine import create_store_engine as create_store_engine
from .sql import open_store as open_store

__all__ = ["Store", "create_store_engine", "open_store"]
