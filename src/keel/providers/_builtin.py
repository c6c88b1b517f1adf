"""Registers the built-in providers through the public plugin hook. Imports stay lazy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..plugins import hookimpl


class _Lazy:
    """A provider class imported on first use, so `import keel` loads no HTTP client or model runtime."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from importlib import import_module

        return getattr(import_module(self.module, __package__), self.name)(*args, **kwargs)


@hookimpl
def register_providers(register: Callable[[str, Any], None]) -> None:
    register("fake", _Lazy(".fake", "FakeProvider"))
    register("openai", _Lazy(".openai_compat", "OpenAICompatProvider"))
    register("anthropic", _Lazy(".anthropic", "AnthropicProvider"))
    register("local", _Lazy(".local", "LocalProvider"))
