"""Keel: software-engineering discipline for LLM features.

The public names are imported on first use, so `keel`'s command-line tools start without
loading the whole client."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name → the module (in this package) that defines it
_EXPORTS = {
    "AsyncClient": ".client",
    "AllProvidersFailed": ".errors",
    "AuthenticationFailed": ".errors",
    "BudgetExceeded": ".errors",
    "ChainStepError": ".errors",
    "CircuitOpen": ".errors",
    "ConfigError": ".errors",
    "InvalidRequest": ".errors",
    "KeelError": ".errors",
    "MissingCredentials": ".errors",
    "OutputValidationError": ".errors",
    "PolicyViolation": ".errors",
    "PromptError": ".errors",
    "PromptNotFound": ".errors",
    "PromptRenderError": ".errors",
    "ProviderConnectionError": ".errors",
    "ProviderError": ".errors",
    "ProviderTimeout": ".errors",
    "RateLimited": ".errors",
    "ReplayMissing": ".errors",
    "RequestError": ".errors",
    "ServerError": ".errors",
    "StoreError": ".errors",
    "UnexpectedResponse": ".errors",
    "UnknownModel": ".errors",
    "Chain": ".chains",
    "FunctionStep": ".chains",
    "PromptStep": ".chains",
    "hookimpl": ".plugins",
    "Capabilities": ".providers.base",
    "Provider": ".providers.base",
    "FakeProvider": ".providers.fake",
    "Settings": ".settings",
    "load_settings": ".settings",
    "OutputSpec": ".structured",
    "Client": ".sync",
    "ChatRequest": ".types",
    "ChatResponse": ".types",
    "Chunk": ".types",
    "Cost": ".types",
    "Message": ".types",
    "ResponseFormat": ".types",
    "Usage": ".types",
}

if TYPE_CHECKING:
    from .client import AsyncClient as AsyncClient
    from .errors import AllProvidersFailed as AllProvidersFailed
    from .errors import AuthenticationFailed as AuthenticationFailed
    from .errors import BudgetExceeded as BudgetExceeded
    from .errors import ChainStepError as ChainStepError
    from .errors import CircuitOpen as CircuitOpen
    from .errors import ConfigError as ConfigError
    from .errors import InvalidRequest as InvalidRequest
    from .errors import KeelError as KeelError
    from .errors import MissingCredentials as MissingCredentials
    from .errors import OutputValidationError as OutputValidationError
    from .errors import PolicyViolation as PolicyViolation
    from .errors import PromptError as PromptError
    from .errors import PromptNotFound as PromptNotFound
    from .errors import PromptRenderError as PromptRenderError
    from .errors import ProviderConnectionError as ProviderConnectionError
    from .errors import ProviderError as ProviderError
    from .errors import ProviderTimeout as ProviderTimeout
    from .errors import RateLimited as RateLimited
    from .errors import ReplayMissing as ReplayMissing
    from .errors import RequestError as RequestError
    from .errors import ServerError as ServerError
    from .errors import StoreError as StoreError
    from .errors import UnexpectedResponse as UnexpectedResponse
    from .errors import UnknownModel as UnknownModel
    from .chains import Chain as Chain
    from .chains import FunctionStep as FunctionStep
    from .chains import PromptStep as PromptStep
    from .plugins import hookimpl as hookimpl
    from .providers.base import Capabilities as Capabilities
    from .providers.base import Provider as Provider
    from .providers.fake import FakeProvider as FakeProvider
    from .settings import Settings as Settings
    from .settings import load_settings as load_settings
    from .structured import OutputSpec as OutputSpec
    from .sync import Client as Client
    from .types import ChatRequest as ChatRequest
    from .types import ChatResponse as ChatResponse
    from .types import Chunk as Chunk
    from .types import Cost as Cost
    from .types import Message as Message
    from .types import ResponseFormat as ResponseFormat
    from .types import Usage as Usage

__version__ = "0.1.0"
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*_EXPORTS, "__version__"])
