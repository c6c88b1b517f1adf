"""Fixtures for the eval tests (helpers are in eval_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_support import ECHO_SUITE, write_suite


@pytest.fixture
def echo_suite(project: Path) -> Path:
    return write_suite(project, ECHO_SUITE)
