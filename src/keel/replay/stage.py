"""ReplayStage: record provider exchanges to files, or answer from those files.

It sits just above ProviderStage, so retries, fallbacks and the cache above it behave as in
production; only the provider is replaced.

    off      pass through
    record   call the provider, write the exchange (answer or ProviderError), return it as is
    replay   answer from the recording, never calling the provider; a request never recorded
             raises ReplayMissing, naming the request, the file expected and how to record it

A request is found by its key (keel.cache.key: provider, upstream model, messages, parameters;
not stream options): a streamed and a plain call share one recording. A stream is recorded as
its assembled answer plus the texts of its chunks and replayed chunk by chunk; a recorded plain
answer is replayed as one chunk. Recording a request again overwrites its file (the last
outcome wins: an error that a retry then got past is replaced by the answer). A stream that fails
mid-way is recorded with the texts that arrived and its error, and replays both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from pathlib import Path
from typing import Any

from ..cache.codec import StreamAssembler, replay_chunks
from ..errors import ConfigError, ProviderError
from ..pipeline import Call, Stage
from ..settings import Settings
from ..types import ChatResponse, Chunk
from . import recording
from .scrub import Scrubber

MODES = ("off", "record", "replay")


class ReplayStage(Stage):
    def __init__(self, inner: Stage, mode: str, directory: Path | str, *, secrets: Iterable[str] = ()) -> None:
        if mode not in MODES:
            raise ConfigError(f"replay mode must be one of {', '.join(MODES)} (KEEL_REPLAY), not {mode!r}.")
        super().__init__(inner)
        self.mode = mode
        self.directory = Path(directory)
        self.secrets = tuple(secrets)

    def path(self, call: Call) -> Path:
        """The recording file of this call."""
        return self._locate(call)[1]

    def _locate(self, call: Call) -> tuple[str, Path]:
        """The call's request key and recording file."""
        target = call.target
        key = recording.request_key(call.request, target.provider.name, target.model)
        return key, self.directory / recording.file_name(target.provider.name, target.model, key)

    async def complete(self, call: Call) -> ChatResponse:
        if self.mode == "replay":
            return self._replayed(call)
        if self.mode == "off":
            return await self.inner.complete(call)
        try:
            response = await self.inner.complete(call)
        except ProviderError as exc:
            self._write(call, error=exc)
            raise
        self._write(call, response=response)
        return response

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        if self.mode == "replay":
            for chunk in self._replayed_chunks(call):
                yield chunk
            return
        assembler = StreamAssembler()
        try:
            async with aclosing(self.inner.stream(call)) as chunks:
                async for chunk in chunks:
                    assembler.add(chunk)
                    yield chunk
        except ProviderError as exc:
            if self.mode == "record":
                self._write(call, stream=assembler.texts, error=exc)
            raise
        if self.mode == "record":
            self._write(call, response=assembler.response(call.target.provider.name), stream=assembler.texts)

    def _replayed(self, call: Call) -> ChatResponse:
        record = self._recorded(call)
        response = recording.response_from(record, call.target.provider.name)
        if response is None:
            raise recording.error_from(record)
        return response

    def _replayed_chunks(self, call: Call) -> Iterable[Chunk]:
        record = self._recorded(call)
        texts = record.get("stream")
        response = recording.response_from(record, call.target.provider.name)
        if response is not None:
            yield from replay_chunks(response, texts)
            return
        yield from (Chunk(delta={"content": text}) for text in texts or [])  # what came before the error
        raise recording.error_from(record)

    def _recorded(self, call: Call) -> dict[str, Any]:
        key, path = self._locate(call)
        record = recording.read(path, key)
        if record is None or ("response" not in record and "error" not in record):
            raise recording.missing(call.request, call.target.provider.name, call.target.model, path)
        return record

    def _write(self, call: Call, *, response: ChatResponse | None = None, error: ProviderError | None = None,
               stream: list[str] | None = None) -> None:
        target, (key, path) = call.target, self._locate(call)
        exchange: dict[str, Any] = {"request": recording.request_fields(call.request, target.provider.name,
                                                                         target.model)}
        if response is not None:
            exchange["response"] = recording.response_fields(response)
        if stream is not None:
            exchange["stream"] = stream
        if error is not None:
            exchange["error"] = recording.error_fields(error)
        scrubber = Scrubber.for_provider(target.provider.settings, self.secrets)
        recording.write(path, {"keel_recording": recording.FORMAT, "key": key, **scrubber.scrub(exchange)})


def replay_stage(inner: Stage, settings: Settings) -> Stage:
    """`inner` wrapped for `settings.replay` (unchanged when the mode is off); a relative
    directory is taken from the project directory (where keel.toml is)."""
    replay = settings.replay
    if replay.mode == "off":
        return inner
    directory = replay.dir if replay.dir.is_absolute() else settings.project_dir / replay.dir
    return ReplayStage(inner, replay.mode, directory)
