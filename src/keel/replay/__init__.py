"""Record/replay of provider exchanges, for deterministic tests of LLM applications.

    stage.py          ReplayStage (off | record | replay), just above ProviderStage; replay_stage()
    recording.py      the file format: one JSON file per exchange, ReplayMissing
    scrub.py          credentials kept out of the files
    pytest_plugin.py  the `keel_replay` fixture and the --keel-replay option

    KEEL_REPLAY=record pytest      # once, against the real providers: writes tests/**/llm_recordings/
    pytest                         # afterwards: answers from the files, no network, no keys
"""

from __future__ import annotations

from .recording import ReplayMissing as ReplayMissing
from .stage import ReplayStage as ReplayStage
from .stage import replay_stage as replay_stage

__all__ = ["ReplayMissing", "ReplayStage", "replay_stage"]
