"""The composition root: the one place that knows concrete classes and wires the pipeline.

    Client / AsyncClient → resolve model (or render a prompt) → RecordStage → StructuredStage
    → CacheStage → BudgetStage → Fallback → Retry → CircuitBreaker → ConcurrencyLimit
    → AttemptTimeout → ReplayStage → ProviderStage → provider

Every stage has the same interface; new ones (policy, guardrails) are inserted in `_build_pipeline`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

from .cost.pricing import PriceBook, Rate, pricing_id_for
from pydantic import ValidationError

from .errors import ConfigError, RequestError, UnknownModel
from .pipeline import Call, ProviderStage, Stage, Target
from .plugins import provider_classes
from .providers.base import Provider
from .settings import Settings, load_settings
from .types import ChatRequest, ChatResponse, Chunk, Message, ResponseFormat

MessagesLike = str | Iterable[Message | dict[str, Any]]


class AsyncClient:
    """The pipeline, async. `complete()` and `stream()` are the single path every call takes."""

    def __init__(self, settings: Settings | None = None, *, record: bool = True, source: str = "library") -> None:
        self.settings = settings or load_settings()
        self.source = source
        self._providers: dict[str, Provider] = {}
        self._targets: dict[str, Target] = {}
        self._prompts: Any = None
        self._recorder: Any = None
        self.prices = PriceBook(_price_overrides(self.settings))
        self._record = record
        self._budgets: Any = None
        self._cache: Any = None
        self._cache_stage: Any = None
        self.pipeline = self._build_pipeline(record)

    # -- calls -------------------------------------------------------------------------------

    async def complete(self, messages: MessagesLike | ChatRequest, *, model: str | None = None, **options: Any) -> ChatResponse:
        call = self.prepare(messages, model=model, **options)
        return await self.pipeline.complete(call)

    async def stream(self, messages: MessagesLike | ChatRequest, *, model: str | None = None, **options: Any) -> AsyncIterator[Chunk]:
        call = self.prepare(messages, model=model, stream=True, **options)
        async for chunk in self.pipeline.stream(call):
            yield chunk

    def prepare(
        self,
        messages: MessagesLike | ChatRequest,
        *,
        model: str | None = None,
        tags: dict[str, Any] | None = None,
        parent_id: str | None = None,
        trace_id: str | None = None,
        raw_request: dict[str, Any] | None = None,
        output: Any = None,
        cache: bool | None = None,
        **params: Any,
    ) -> Call:
        """Build the Call for a request: resolve its model and give it a trace id.

        `output` (a Pydantic model, a type, or a JSON schema) asks for a validated, repaired
        answer in `response.parsed`; `cache=False` bypasses the response cache, `True` forces it.
        """
        request = _to_request(messages, model, params)
        target = self.resolve(request.model or self.settings.default_model)
        return Call(
            request=request,
            target=target,
            trace_id=trace_id or os.urandom(16).hex(),
            parent_id=parent_id,
            tags=tags or {},
            source=self.source,
            raw_request=raw_request,
            output=_output_spec(output),
            cache=cache,
        )

    async def prefetch(self, calls: list[Call]) -> None:
        """Read the cached answers of prepared `calls` in one round trip, before they are sent
        (each then finds its answer without a round trip of its own). A no-op without a cache."""
        if self._cache_stage is not None:
            await self._cache_stage.prefetch(calls)

    def prompt(self, name: str, label: str | None = None) -> "PromptHandle":
        """A prompt file called by name: `await client.prompt("summarize").run(text=...)`."""
        return PromptHandle(self, name, label)

    async def prepare_prompt(
        self,
        name: str,
        *,
        label: str | None = None,
        variables: dict[str, Any] | None = None,
        messages: Iterable[Message | dict[str, Any]] = (),
        model: str | None = None,
        **options: Any,
    ) -> Call:
        """Render prompt `name` (at `label`, else the file on disk) into a Call for the pipeline."""
        spec, ref = await self.prompts.resolve(name, label)
        rendered = spec.render(variables or {})
        extra = [m.model_dump(exclude_none=True) if isinstance(m, Message) else m for m in messages]
        params = {**spec.params, **{k: v for k, v in options.items() if v is not None}}
        if spec.output and "response_format" not in params:
            params.setdefault("output", spec.output)
        call = self.prepare(rendered + extra, model=model or spec.model, **params)
        call.prompt = ref
        return call

    @property
    def prompts(self) -> Any:
        if self._prompts is None:
            from .prompts.runtime import PromptResolver

            s = self.settings
            self._prompts = PromptResolver(s.prompts_dir, s.lock_path, s.effective_store_url)
        return self._prompts

    # -- models and providers ----------------------------------------------------------------

    def resolve(self, name: str) -> Target:
        """A model name → provider + upstream model id: an alias, or `provider/model-id`."""
        target = self._targets.get(name)
        if target is None:
            target = self._targets[name] = self._resolve(name)
        return target

    def _resolve(self, name: str) -> Target:
        alias = self.settings.models.get(name)
        if alias is not None:
            return self._target(name, alias.provider, alias.model)
        provider, sep, model_id = name.partition("/")
        if sep and provider in self.settings.providers and model_id:
            return self._target(name, provider, model_id)
        raise UnknownModel(name, self.known_models())

    def known_models(self) -> list[str]:
        return sorted(self.settings.models)

    def provider(self, name: str) -> Provider:
        """The provider instance configured under `name` (created on first use)."""
        if name not in self._providers:
            config = self.settings.providers.get(name)
            if config is None:
                raise ConfigError(f"No provider named {name!r}. Configured providers: {', '.join(sorted(self.settings.providers))}.")
            classes = provider_classes()
            if config.type not in classes:
                raise ConfigError(
                    f"Provider {name!r} has unknown type {config.type!r}. Known types: {', '.join(sorted(classes))}. "
                    "Install the plugin that provides it or fix `type` in keel.toml."
                )
            self._providers[name] = classes[config.type](name, config)
        return self._providers[name]

    def _target(self, alias: str, provider_name: str, model: str) -> Target:
        if provider_name not in self.settings.providers:
            raise ConfigError(
                f"Model {alias!r} points at provider {provider_name!r}, which is not configured. "
                f"Add [providers.{provider_name}] to keel.toml."
            )
        provider = self.provider(provider_name)
        config = self.settings.providers[provider_name]
        pricing = pricing_id_for(config.type, config.base_url, config.pricing_id)
        return Target(alias=alias, provider=provider, model=model, pricing_id=pricing)

    # -- wiring ------------------------------------------------------------------------------

    def _build_pipeline(self, record: bool) -> Stage:
        from .budgets import BudgetStage, with_budgets
        from .cache import CacheStage, cache_backend
        from .replay import replay_stage
        from .routing import build_routing
        from .structured import StructuredStage, mode_for

        stage: Stage = replay_stage(ProviderStage(), self.settings)
        stage = build_routing(stage, self.settings, self.resolve)
        # Budgets reserve per upstream call (inside repairs) so one reservation never covers several.
        stage = with_budgets(stage, self.settings, self.prices)
        self._budgets = stage if isinstance(stage, BudgetStage) else None
        if self.settings.cache.enabled:
            # Above budgets (a hit reserves nothing), below structured output (the enforced request,
            # schema included, is the key, and hits are validated and parsed like fresh answers).
            self._cache = cache_backend(self.settings)
            stage = self._cache_stage = CacheStage(stage, self._cache, self.settings.cache.ttl)
        stage = StructuredStage(stage, mode_for=mode_for(self.settings))
        if record:
            from .tracing.stage import RecordStage

            stage = RecordStage(stage, self.recorder, self.prices)
        return stage

    @property
    def recorder(self) -> Any:
        if self._recorder is None:
            from .tracing.recorder import Recorder

            state = self.settings.state_dir
            self._recorder = Recorder(self.settings.effective_store_url, state / "journal")
        return self._recorder

    def recover(self) -> None:
        """Queue what crashed processes left in the trace journal for writing to the store."""
        if self._record:
            self.recorder.recover()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every trace recorded so far is in the store."""
        return self._recorder.flush(timeout) if self._recorder is not None else True

    async def aclose(self) -> None:
        if self._budgets is not None:
            await self._budgets.aclose()
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
        self._targets.clear()
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None
        if self._prompts is not None:
            self._prompts.close()
            self._prompts = None
        if self._cache is not None:
            await self._cache.aclose()
            self._cache = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class PromptHandle:
    """A prompt bound to a client: `run(**variables)` and `stream(**variables)`."""

    def __init__(self, client: AsyncClient, name: str, label: str | None) -> None:
        self.client, self.name, self.label = client, name, label

    async def run(self, *, options: dict[str, Any] | None = None, **variables: Any) -> ChatResponse:
        call = await self.client.prepare_prompt(self.name, label=self.label, variables=variables, **(options or {}))
        return await self.client.pipeline.complete(call)

    async def stream(self, *, options: dict[str, Any] | None = None, **variables: Any) -> AsyncIterator[Chunk]:
        opts = {**(options or {}), "stream": True}
        call = await self.client.prepare_prompt(self.name, label=self.label, variables=variables, **opts)
        async for chunk in self.client.pipeline.stream(call):
            yield chunk


def _to_request(messages: MessagesLike | ChatRequest, model: str | None, params: dict[str, Any]) -> ChatRequest:
    if isinstance(messages, ChatRequest):
        updates = {k: v for k, v in params.items() if v is not None}
        if model:
            updates["model"] = model
        return messages.model_copy(update=updates) if updates else messages
    if isinstance(messages, str):
        items: list[Any] = [{"role": "user", "content": messages}]
    else:
        items = [m.model_dump(exclude_none=True) if isinstance(m, Message) else m for m in messages]
    system = params.pop("system", None)
    if system:
        items.insert(0, {"role": "system", "content": system})
    schema = params.pop("json_schema", None)
    if schema is not None:
        params["response_format"] = ResponseFormat.from_schema(schema)
    body = {k: v for k, v in params.items() if v is not None}
    try:
        return ChatRequest.model_validate({"model": model or "", "messages": items, **body})
    except ValidationError as exc:
        raise RequestError(f"Invalid request: {describe_validation(exc)}") from None


def describe_validation(exc: ValidationError) -> str:
    """A pydantic error as one readable line: field path and what is wrong with it."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def _output_spec(output: Any) -> Any:
    if output is None:
        return None
    from .structured import OutputSpec

    return OutputSpec.of(output)


def _price_overrides(settings: Settings) -> dict[tuple[str, str], Rate]:
    return {
        (alias.provider, alias.model): Rate.per_million(alias.price, f"keel.toml [models.{name}.price]")
        for name, alias in settings.models.items()
        if alias.price is not None
    }
