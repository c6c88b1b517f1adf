"""Shared fixtures. Every test runs in its own project directory with its own state dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Refuse any model call to a host that is not on this machine (see keel.providers._http).
os.environ["KEEL_BLOCK_REMOTE"] = "1"
for var in ("KEEL_CONFIG", "KEEL_HOME", "KEEL_STORE_URL", "KEEL_DEFAULT_MODEL", "KEEL_LOCAL_MODEL"):
    os.environ.pop(var, None)

from testenv import PG_URL  # noqa: F401  (re-exported for fixtures)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory, made the cwd, with no keel.toml."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
