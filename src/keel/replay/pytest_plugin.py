"""The pytest plugin: `--keel-replay=record|replay|off` and the `keel_replay` fixture.

    def test_summary(keel_replay):             # recordings in <test dir>/llm_recordings/<module>/
        client = keel.Client()                 # uses replay: the fixture sets KEEL_REPLAY(_DIR)
        ...

The mode is the option's, else KEEL_REPLAY's, else "replay": a test never reaches a provider
unless asked to record. A test that does not use the fixture is not affected.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .stage import MODES

DEFAULT_MODE = "replay"
DIRECTORY = "llm_recordings"


@dataclass(frozen=True)
class KeelReplay:
    """The replay setup of one test: its mode and the directory of its module's recordings."""

    mode: str
    directory: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment variables that make `keel.Client()` use this setup (set by the fixture)."""
        return {"KEEL_REPLAY": self.mode, "KEEL_REPLAY_DIR": str(self.directory)}

    @property
    def settings_overrides(self) -> dict[str, Any]:
        """For explicit settings: `load_settings(**keel_replay.settings_overrides)`."""
        return {"replay": {"mode": self.mode, "dir": self.directory}}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("keel", "Keel record/replay of LLM calls")
    group.addoption(
        "--keel-replay", choices=MODES, default=None, dest="keel_replay",
        help="record: call the providers and write llm_recordings/; replay (default): answer from "
             "them, failing on requests never recorded; off: call the providers, record nothing. "
             "Default: $KEEL_REPLAY, else replay.",
    )


@pytest.fixture
def keel_replay(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeelReplay]:
    mode = request.config.getoption("keel_replay") or os.environ.get("KEEL_REPLAY") or DEFAULT_MODE
    if mode not in MODES:
        raise pytest.UsageError(f"KEEL_REPLAY must be one of {', '.join(MODES)}, not {mode!r}.")
    module = request.path
    setup = KeelReplay(mode, module.parent / DIRECTORY / module.stem)
    for name, value in setup.env.items():
        monkeypatch.setenv(name, value)
    yield setup
