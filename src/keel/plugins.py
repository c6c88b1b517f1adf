"""The plugin contract. Built-in providers register through the same hook a third-party package uses.

A plugin package declares an entry point in the group ``keel`` pointing at a module with::

    from keel.plugins import hookimpl

    @hookimpl
    def register_providers(register):
        register("myvendor", MyVendorProvider)   # a keel.providers.base.Provider subclass
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .providers.base import Provider

hookspec = pluggy.HookspecMarker("keel")
hookimpl = pluggy.HookimplMarker("keel")


class KeelSpec:
    @hookspec
    def register_providers(self, register: Callable[[str, type[Provider]], None]) -> None:
        """Register provider classes by the `type` name used in keel.toml."""


@lru_cache(maxsize=1)
def plugin_manager() -> pluggy.PluginManager:
    from .providers import _builtin

    pm = pluggy.PluginManager("keel")
    pm.add_hookspecs(KeelSpec)
    pm.register(_builtin, name="keel.builtin")
    pm.load_setuptools_entrypoints("keel")
    return pm


def provider_classes() -> dict[str, type[Provider]]:
    """Every provider type known to this process, built-in and plugged in."""
    found: dict[str, type[Provider]] = {}
    plugin_manager().hook.register_providers(register=found.__setitem__)
    return found
