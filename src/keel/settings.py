"""Typed settings. Precedence: explicit arguments > KEEL_* environment > keel.toml > defaults.

Environment variables (the whole catalog):

    KEEL_CONFIG         path of the project file (default: keel.toml found upwards from the cwd)
    KEEL_HOME           state directory: store, journal, caches (default: <project>/.keel)
    KEEL_DEFAULT_MODEL  model used when a call names none (default: "local")
    KEEL_STORE_URL      SQLAlchemy URL of the trace store (default: sqlite under KEEL_HOME)
    KEEL_LOCAL_MODEL    path of a GGUF file for the `local` provider (default: the bundled model)
    KEEL_HOST, KEEL_PORT          where `keel serve` listens (default 127.0.0.1:8787)
    KEEL_GATEWAY_KEYS   comma-separated keys the gateway accepts as `Authorization: Bearer …`
    KEEL_REDIS_URL      Redis shared by gateway workers (budgets, cache), e.g. redis://127.0.0.1:6379/0
    KEEL_REPLAY         off | record | replay: record provider exchanges to files, or answer from them
    KEEL_REPLAY_DIR     where recordings live (default: tests/llm_recordings)
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

CONFIG_NAME = "keel.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderSettings(_Strict):
    """Who and where: the provider kind, endpoint, credentials and data location."""

    type: str
    base_url: str | None = None
    api_key_env: str | None = None
    region: str | None = None
    jurisdiction: str | None = None
    #: The genai-prices provider id that prices this endpoint (inferred for well-known hosts).
    pricing_id: str | None = None
    timeout: float = Field(default=60.0, gt=0)
    #: Extra headers sent with every request (e.g. Azure's api-version goes in the URL instead).
    headers: dict[str, str] = Field(default_factory=dict)
    #: At most this many calls in flight to this provider at once (None: unlimited).
    max_concurrency: int | None = Field(default=None, ge=1)
    # Local provider only.
    model_path: str | None = None
    n_ctx: int = Field(default=4096, ge=256)
    n_parallel: int = Field(default=2, ge=1, le=64)
    n_threads: int | None = Field(default=None, ge=1)


class PriceSettings(_Strict):
    """A price override in currency units per million tokens, or, for a self-hosted model, the
    hardware's price per hour and its measured throughput (tokens per second)."""

    input_per_mtok: Decimal | None = Field(default=None, ge=0)
    output_per_mtok: Decimal | None = Field(default=None, ge=0)
    cached_input_per_mtok: Decimal | None = Field(default=None, ge=0)
    per_hour: Decimal | None = Field(default=None, ge=0)
    tokens_per_second: Decimal | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_way_to_price(self) -> "PriceSettings":
        per_token = self.input_per_mtok is not None and self.output_per_mtok is not None
        hourly = self.per_hour is not None and self.tokens_per_second is not None
        if per_token == hourly:
            raise ValueError(
                "give either input_per_mtok and output_per_mtok, or per_hour and tokens_per_second (self-hosted)"
            )
        return self

    def per_million(self) -> tuple[Decimal, Decimal, Decimal]:
        """(input, output, cached input) per million tokens."""
        if self.per_hour is not None and self.tokens_per_second is not None:
            rate = self.per_hour / (self.tokens_per_second * 3600) * 1_000_000
            return rate, rate, rate
        assert self.input_per_mtok is not None and self.output_per_mtok is not None
        cached = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        return self.input_per_mtok, self.output_per_mtok, cached


class ModelSettings(_Strict):
    """An alias: a name the application uses, bound to one provider's model id."""

    provider: str
    model: str
    price: PriceSettings | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    #: Other model names (aliases or provider/model-id) tried in order when this one fails.
    fallbacks: list[str] = Field(default_factory=list)
    #: How this model enforces a JSON schema: "native" (trust the provider's mode, still validated)
    #: or "prompt" (the endpoint ignores response_format: instruct in the prompt and validate).
    structured_output: Literal["native", "prompt"] | None = None


class RoutingSettings(_Strict):
    """Retries, deadlines and circuit breaking, for every model unless a call says otherwise."""

    #: False leaves every reliability stage out (e.g. when something in front already retries).
    enabled: bool = True
    retries: int = Field(default=2, ge=0, le=20)
    backoff_base: float = Field(default=0.5, gt=0)
    backoff_max: float = Field(default=20.0, gt=0)
    #: Seconds one attempt may take; the provider's own timeout applies too.
    attempt_timeout: float | None = Field(default=None, gt=0)
    #: Seconds the whole call (all retries and fallbacks) may take.
    deadline: float | None = Field(default=120.0, gt=0)
    circuit_failures: int = Field(default=5, ge=1)
    circuit_window: float = Field(default=30.0, gt=0)
    circuit_cooldown: float = Field(default=30.0, gt=0)


class GatewaySettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    keys: list[str] = Field(default_factory=list)
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)


class CacheSettings(_Strict):
    """Exact-match response cache. Only deterministic requests (temperature 0 or a seed) are cached
    unless a call asks for it."""

    enabled: bool = True
    ttl: float = Field(default=24 * 3600, gt=0)
    #: Where entries live: None = the trace store's database; or a redis:// URL.
    url: str | None = None


class ReplaySettings(_Strict):
    """Record/replay of provider exchanges for deterministic tests of LLM apps."""

    mode: Literal["off", "record", "replay"] = "off"
    dir: Path = Path("tests/llm_recordings")


class BudgetSettings(_Strict):
    """A spending limit. Hard budgets refuse calls that could overshoot; soft ones alert."""

    name: str
    limit: Decimal = Field(gt=0)
    period: Literal["day", "month", "total"] = "month"
    hard: bool = True
    #: global | key (per gateway key) | tenant (per X-Keel-Tenant / `tenant` tag) | tag:NAME (per value) |
    #: tag:NAME=VALUE | prompt:NAME
    scope: str = "global"
    #: Called with a JSON POST when a soft budget is crossed.
    webhook: str | None = None
    #: Output tokens reserved for a request that sets no max_tokens.
    reserve_max_tokens: int = Field(default=4096, ge=1)


class Settings(_Strict):
    default_model: str = "local"
    store_url: str | None = None
    home: Path | None = None
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    budgets: list[BudgetSettings] = Field(default_factory=list)
    #: Redis for state shared by gateway workers (budgets, cache); None = this process/the store.
    redis_url: str | None = None
    #: Where the settings were read from (None when running on defaults).
    source: Path | None = Field(default=None, exclude=True)

    @property
    def state_dir(self) -> Path:
        if self.home is not None:
            return self.home
        return self.project_dir / ".keel"

    @property
    def project_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    @property
    def prompts_dir(self) -> Path:
        return self.project_dir / "prompts"

    @property
    def lock_path(self) -> Path:
        return self.project_dir / "keel.lock"

    @property
    def effective_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.state_dir / 'keel.db'}"



def find_config(start: Path | None = None) -> Path | None:
    """The nearest keel.toml in the current directory or its parents."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def load_settings(path: Path | str | None = None, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Read keel.toml (if any), apply KEEL_* variables and explicit overrides."""
    env = dict(os.environ if env is None else env)
    explicit = path or env.get("KEEL_CONFIG")
    config_path = Path(explicit) if explicit else find_config()
    data: dict[str, Any] = _read_toml(config_path) if config_path else {}
    data.update(_from_env(env, data))
    data.update({k: v for k, v in overrides.items() if v is not None})
    _add_builtins(data)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise _config_error(config_path, exc) from None
    settings.source = config_path.resolve() if config_path else None
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found. Create it with `keel init` or unset KEEL_CONFIG.", file=str(path))
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text. Save the file as UTF-8.", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}. Fix the syntax at that line.", file=str(path)) from None


def _from_env(env: dict[str, str], data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    simple = {"KEEL_DEFAULT_MODEL": "default_model", "KEEL_STORE_URL": "store_url", "KEEL_HOME": "home", "KEEL_REDIS_URL": "redis_url"}
    for var, key in simple.items():
        if env.get(var):
            out[key] = env[var]
    gateway = dict(data.get("gateway") or {})
    if env.get("KEEL_HOST"):
        gateway["host"] = env["KEEL_HOST"]
    if env.get("KEEL_PORT"):
        gateway["port"] = env["KEEL_PORT"]
    if env.get("KEEL_GATEWAY_KEYS"):
        gateway["keys"] = [k.strip() for k in env["KEEL_GATEWAY_KEYS"].split(",") if k.strip()]
    if gateway:
        out["gateway"] = gateway
    if env.get("KEEL_REPLAY") or env.get("KEEL_REPLAY_DIR"):
        replay = dict(data.get("replay") or {})
        if env.get("KEEL_REPLAY"):
            replay["mode"] = env["KEEL_REPLAY"]
        if env.get("KEEL_REPLAY_DIR"):
            replay["dir"] = env["KEEL_REPLAY_DIR"]
        out["replay"] = replay
    if env.get("KEEL_LOCAL_MODEL"):
        providers = dict(data.get("providers") or {})
        local = dict(providers.get("local") or {"type": "local"})
        local["model_path"] = env["KEEL_LOCAL_MODEL"]
        providers["local"] = local
        out["providers"] = providers
    return out


#: Providers and aliases that exist without any configuration. `[providers.local]` in keel.toml
#: tunes the built-in entry: what it leaves out keeps the built-in value.
BUILTIN_PROVIDERS = {name: {"type": name, "region": "local", "jurisdiction": "local"} for name in ("local", "fake")}
BUILTIN_MODELS = {"local": {"provider": "local", "model": "default"}}


def _add_builtins(data: dict[str, Any]) -> None:
    providers = data.get("providers")
    if providers is None or isinstance(providers, dict):  # anything else is reported by validation
        data["providers"] = {**BUILTIN_PROVIDERS, **(providers or {})}
        for name, builtin in BUILTIN_PROVIDERS.items():
            if isinstance(data["providers"][name], dict):
                data["providers"][name] = {**builtin, **data["providers"][name]}
    models = data.get("models")
    if models is None or isinstance(models, dict):
        data["models"] = {**BUILTIN_MODELS, **(models or {})}


def _config_error(path: Path | None, exc: ValidationError) -> ConfigError:
    where = str(path) if path else "settings (KEEL_* environment)"
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key {key!r}: remove it or check its spelling")
        elif err["type"] == "missing":
            problems.append(f"missing key {key!r}: add it")
        else:
            problems.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return ConfigError(f"{where}: " + "; ".join(problems), file=where, problems=problems)
