"""ReplayStage: recording exchanges to readable files without secrets, and answering from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from upstreams import Fault, OpenAIUpstream

from keel.errors import ConfigError, KeelError, RateLimited, ServerError
from keel.pipeline import ProviderStage
from keel.replay import ReplayMissing, ReplayStage, replay_stage
from keel.settings import Settings

from .conftest import KEY_VAR, SECRET, Outcome, Replayed, run

LEAKY = "my key is sk-live-abcdefghijkl, header Bearer abc.def.ghijkl"


def files(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(directory.iterdir())}


def test_recording_writes_one_readable_file_per_exchange_without_secrets(
    settings: Settings, up: OpenAIUpstream, recordings: Path
) -> None:
    async def scenario(replayed: Replayed) -> None:
        await replayed.complete(temperature=0)
        await replayed.complete(LEAKY)
        await replayed.stream("a stream")

    run(settings, "record", recordings, scenario)
    assert up.requests[0].headers["authorization"] == f"Bearer {SECRET}"  # the key was in play
    written = files(recordings)
    assert len(written) == 3 and all(name.startswith("up-gpt-4o-mini-") for name in written)
    for text in written.values():
        assert "SECRET123" not in text and "sk-live" not in text and "abc.def.ghijkl" not in text
        assert text.startswith('{\n  "keel_recording": 1,\n  "key": "')
    records = [json.loads(text) for text in written.values()]
    plain = next(r for r in records if r["request"]["messages"][0]["content"] == "hello there")
    assert plain["request"] == {"provider": "up", "model": "gpt-4o-mini",
                                "messages": [{"role": "user", "content": "hello there"}],
                                "params": {"temperature": 0.0}}
    assert plain["response"]["message"]["content"] == "Echo: hello there"
    assert plain["response"]["finish_reason"] == "stop" and plain["response"]["usage"]["prompt_tokens"] == 2
    assert plain["response"]["system_fingerprint"] == "fp_upstream" and "error" not in plain
    leaky = next(r for r in records if "REDACTED" in r["request"]["messages"][0]["content"])
    assert leaky["request"]["messages"][0]["content"] == "my key is [REDACTED], header Bearer [REDACTED]"
    streamed = next(r for r in records if "stream" in r)
    assert streamed["stream"] == ["Echo: ", "a ", "stream"]


def test_recording_the_same_exchange_again_writes_the_same_bytes(
    settings: Settings, up: OpenAIUpstream, recordings: Path
) -> None:
    run(settings, "record", recordings, lambda replayed: replayed.complete(temperature=0))
    first = files(recordings)
    run(settings, "record", recordings, lambda replayed: replayed.complete(temperature=0))
    assert files(recordings) == first and up.count == 2
    assert [p.name for p in recordings.iterdir()] == list(first)  # no temporary file left behind


def test_replay_answers_from_the_files_without_the_network_or_a_key(
    settings: Settings, up: OpenAIUpstream, recordings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def calls(replayed: Replayed) -> list[Outcome]:
        return [await replayed.complete(temperature=0), await replayed.stream("a stream"),
                await replayed.complete("json please", response_format={"type": "json_object"})]

    recorded = run(settings, "record", recordings, calls)
    up.stop()
    monkeypatch.delenv(KEY_VAR)
    replayed = run(settings, "replay", recordings, calls)
    assert up.count == 3
    assert [o.text for o in replayed] == [o.text for o in recorded]
    plain = replayed[0].response
    assert plain is not None and plain.provider == "up" and plain.model == "gpt-4o-mini"
    assert plain.usage == recorded[0].response.usage  # type: ignore[union-attr]
    assert [c.text for c in replayed[1].chunks] == ["Echo: ", "a ", "stream", ""]
    assert replayed[1].chunks[-1].finish_reason == "stop"
    assert replayed[1].chunks[-1].usage == recorded[1].chunks[-1].usage


def test_a_plain_recording_replays_as_a_stream_and_the_other_way_round(
    settings: Settings, up: OpenAIUpstream, recordings: Path
) -> None:
    async def record(replayed: Replayed) -> None:
        await replayed.complete("plain")
        await replayed.stream("streamed")

    async def replay(replayed: Replayed) -> tuple[Outcome, Outcome]:
        return await replayed.stream("plain"), await replayed.complete("streamed")

    run(settings, "record", recordings, record)
    as_stream, as_plain = run(settings, "replay", recordings, replay)
    assert as_stream.text == "Echo: plain" and as_plain.text == "Echo: streamed" and up.count == 2


def test_an_unrecorded_request_fails_loudly(settings: Settings, up: OpenAIUpstream, recordings: Path) -> None:
    with pytest.raises(ReplayMissing) as caught:
        run(settings, "replay", recordings, lambda replayed: replayed.complete("never " + "recorded " * 20))
    message = str(caught.value)
    assert isinstance(caught.value, KeelError) and up.count == 0
    assert "No recording of this request to up/gpt-4o-mini" in message
    assert "(first user message: 'never recorded recorded" in message and "…'" in message
    assert str(recordings / "up-gpt-4o-mini-") in message and ".json" in message
    assert "KEEL_REPLAY=record" in message and "--keel-replay=record" in message
    assert caught.value.model == "gpt-4o-mini"  # type: ignore[attr-defined]


def test_a_recorded_rate_limit_replays_as_the_same_typed_error(
    settings: Settings, up: OpenAIUpstream, recordings: Path
) -> None:
    up.script(Fault.RATE_LIMIT, retry_after=3)
    with pytest.raises(RateLimited) as recorded:
        run(settings, "record", recordings, lambda replayed: replayed.complete(temperature=0))
    up.stop()
    with pytest.raises(RateLimited) as replayed:
        run(settings, "replay", recordings, lambda replayed: replayed.complete(temperature=0))
    error = replayed.value
    assert (str(error), error.status, error.retry_after, error.provider) == (  # type: ignore[attr-defined]
        str(recorded.value), 429, 3.0, "up")
    record = json.loads(next(recordings.iterdir()).read_text(encoding="utf-8"))
    assert record["error"]["class"] == "RateLimited" and "response" not in record


def test_a_stream_that_failed_mid_way_replays_its_texts_then_the_error(
    settings: Settings, up: OpenAIUpstream, recordings: Path
) -> None:
    up.reply = "one two three four five six"
    up.script(Fault.ERROR_EVENT)
    for mode in ("record", "replay"):
        chunks: list[str] = []

        async def scenario(replayed: Replayed) -> None:
            outcome = Outcome(replayed.client.prepare("hi", model="primary", stream=True))
            async for chunk in replayed.stage.stream(outcome.call):
                chunks.append(chunk.text)

        with pytest.raises(ServerError):
            run(settings, mode, recordings, scenario)
        assert "".join(chunks) == "one two "
    assert up.count == 1


def test_off_passes_through_and_writes_nothing(settings: Settings, up: OpenAIUpstream, recordings: Path) -> None:
    outcome = run(settings, "off", recordings, lambda replayed: replayed.complete())
    assert outcome.text == "Echo: hello there" and up.count == 1 and not recordings.exists()


def test_replay_stage_from_settings(settings: Settings, project: Path) -> None:
    inner = ProviderStage()
    assert replay_stage(inner, settings) is inner
    stage = replay_stage(inner, settings.model_copy(update={"replay": settings.replay.model_copy(
        update={"mode": "replay"})}))
    assert isinstance(stage, ReplayStage) and stage.directory == project / "tests" / "llm_recordings"
    with pytest.raises(ConfigError, match="replay mode must be one of off, record, replay"):
        ReplayStage(inner, "sometimes", project)
