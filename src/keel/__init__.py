"""Keel: software-engineering discipline for LLM features."""

from .client import AsyncClient as AsyncClient
from .errors import (
    AllProvidersFailed as AllProvidersFailed,
    AuthenticationFailed as AuthenticationFailed,
    BudgetExceeded as BudgetExceeded,
    ChainStepError as ChainStepError,
    CircuitOpen as CircuitOpen,
    ConfigError as ConfigError,
    InvalidRequest as InvalidRequest,
    KeelError as KeelError,
    MissingCredentials as MissingCredentials,
    OutputValidationError as OutputValidationError,
    PolicyViolation as PolicyViolation,
    PromptError as PromptError,
    PromptNotFound as PromptNotFound,
    PromptRenderError as PromptRenderError,
    ProviderConnectionError as ProviderConnectionError,
    ProviderError as ProviderError,
    ProviderTimeout as ProviderTimeout,
    RateLimited as RateLimited,
    ReplayMissing as ReplayMissing,
    RequestError as RequestError,
    ServerError as ServerError,
    StoreError as StoreError,
    UnexpectedResponse as UnexpectedResponse,
    UnknownModel as UnknownModel,
)
from .chains import Chain as Chain, FunctionStep as FunctionStep, PromptStep as PromptStep
from .plugins import hookimpl as hookimpl
from .providers.base import Capabilities as Capabilities, Provider as Provider
from .providers.fake import FakeProvider as FakeProvider
from .settings import Settings as Settings, load_settings as load_settings
from .structured import OutputSpec as OutputSpec
from .sync import Client as Client
from .types import (
    ChatRequest as ChatRequest,
    ChatResponse as ChatResponse,
    Chunk as Chunk,
    Cost as Cost,
    Message as Message,
    ResponseFormat as ResponseFormat,
    Usage as Usage,
)

__version__ = "0.1.0"
