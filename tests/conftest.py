"""Shared fixtures. Every test runs in its own project directory with its own state dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Refuse any model call to a host that is not on this machine (see keel.providers._http).
os.environ["KEEL_BLOCK_REMOTE"] = "1"
for var in ("KEEL_CONFIG", "KEEL_HOME", "KEEL_STORE_URL", "KEEL_DEFAULT_MODEL", "KEEL_LOCAL_MODEL"):
    os.environ.pop(var, None)

from testenv import PG_URL  # noqa: F401  (re-exported for fixtures)


@pytest.fixture(scope="session")
def local_provider() -> Iterator[Any]:
    """The bundled local model, loaded once for the whole session (the engine is process-wide)."""
    import asyncio

    from keel.providers.local import LocalProvider, unload_engines
    from keel.settings import ProviderSettings

    provider = LocalProvider("local", ProviderSettings(type="local", n_ctx=4096, n_parallel=2))
    asyncio.run(provider.engine("default"))
    yield provider
    unload_engines()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store on SQLite (a temporary file) and on PostgreSQL (a fresh database per test)."""
    from keel.store.testing import temporary_database

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'not-yet-created' / 'keel.db'}"
    else:
        with temporary_database(PG_URL) as url:
            yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    from keel.store import open_store

    with open_store(store_url) as store:
        yield store


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory, made the cwd, with no keel.toml."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
