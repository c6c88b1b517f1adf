"""Throw-away PostgreSQL databases for tests: `with temporary_database(admin_url) as url: …`."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url

from .sql import create_store_engine


@contextmanager
def temporary_database(admin_url: str) -> Iterator[str]:
    """Create `keel_test_<hex>` through the database at `admin_url`; yield its URL; drop it after."""
    name = f"keel_test_{secrets.token_hex(6)}"
    admin = create_store_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
