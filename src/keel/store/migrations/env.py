"""Alembic environment. Keel hands over an open connection (keel.store.migrate); the `alembic`
command line gets its URL from `-x url=…` or KEEL_STORE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from keel.store.schema import metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: autogenerate "move and copy" batch operations for it.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_from_command_line() -> None:
    from keel.store.engine import create_store_engine

    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("KEEL_STORE_URL")
    if not url:
        raise SystemExit("Give the database URL: alembic -x url=sqlite:///path/keel.db … or set KEEL_STORE_URL")
    engine = create_store_engine(url)
    try:
        with engine.begin() as connection:
            run_on(connection)
    finally:
        engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    run_on(given)
else:
    run_from_command_line()
