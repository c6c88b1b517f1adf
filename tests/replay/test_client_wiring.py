"""Record/replay as `keel.Client` wires it: KEEL_REPLAY and KEEL_REPLAY_DIR are all it takes."""

from __future__ import annotations

from pathlib import Path

import pytest

import keel
from keel.replay import ReplayMissing

# Until client.py wires ReplayStage into the pipeline (remove this guard once it does).


def test_record_then_replay_through_the_client(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_REPLAY", "record")
    with keel.Client() as client:
        recorded = client.complete("hello", model="fake/echo", temperature=0)
        assert len(client.provider("fake").history) == 1
    [path] = (project / "tests" / "llm_recordings").iterdir()  # the default directory, in the project
    assert path.name.startswith("fake-echo-")

    monkeypatch.setenv("KEEL_REPLAY", "replay")
    with keel.Client() as client:
        replayed = client.complete("hello", model="fake/echo", temperature=0)
        assert client.provider("fake").history == [] and replayed.content == recorded.content
        with pytest.raises(ReplayMissing, match="KEEL_REPLAY=record"):
            client.complete("something else", model="fake/echo")


def test_the_cache_does_not_hide_requests_from_a_recording_run(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with keel.Client() as client:  # an ordinary run fills the cache in the project's store
        client.complete("hello", model="fake/echo", temperature=0)
    monkeypatch.setenv("KEEL_REPLAY", "record")
    with keel.Client() as client:
        client.complete("hello", model="fake/echo", temperature=0)
        assert len(client.provider("fake").history) == 1  # not answered from the store's cache
    assert len(list((project / "tests" / "llm_recordings").iterdir())) == 1
