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


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory, made the cwd, with no keel.toml."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
