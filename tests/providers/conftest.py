"""The one loaded local model shared by every test in the session (the engine is process-wide)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from keel.providers.local import LocalProvider, unload_engines
from keel.settings import ProviderSettings


@pytest.fixture(scope="session")
def local_provider() -> Iterator[LocalProvider]:
    """A LocalProvider on the bundled default model, loaded once, with two slots."""
    provider = LocalProvider("local", ProviderSettings(type="local", n_ctx=4096, n_parallel=2))
    asyncio.run(provider.engine("default"))
    yield provider
    unload_engines()
