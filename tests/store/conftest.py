"""The store suites run on SQLite and PostgreSQL through `store_url` and `store` (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from keel.store import create_store_engine


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = create_store_engine(store_url)
    yield engine
    engine.dispose()
