"""Prompts at call time: resolve `name[@label]` to a spec and its version, from files and the store.

Without a label the prompt file on disk is used (re-read when it changes) and its version is saved
in the store's registry. With a label, the store says which version the label points at; labels
are re-read at most every `label_ttl` seconds, so moving one takes effect without a restart.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PromptNotFound
from .library import PromptLibrary
from .lockfile import LockEntry, Lockfile
from .spec import PromptSpec


@dataclass(frozen=True)
class PromptRef:
    """Which prompt a call ran, for its trace; `locked` is its keel.lock entry, if any."""

    name: str
    version: str
    label: str | None = None
    locked: LockEntry | None = None


def parse_prompt_model(model: str) -> tuple[str, str | None] | None:
    """`prompt:summarize@production` → ("summarize", "production"); None for other model names."""
    if not model.startswith("prompt:"):
        return None
    name, _, label = model.removeprefix("prompt:").partition("@")
    return name.strip(), (label.strip() or None)


class PromptResolver:
    def __init__(self, prompts_dir: Path, lock_path: Path, store_url: str, *, label_ttl: float = 1.0) -> None:
        self.library = PromptLibrary(prompts_dir)
        self.lock_path = lock_path
        self.store_url = store_url
        self.label_ttl = label_ttl
        self._store: Any = None
        self._store_lock = threading.Lock()
        self._labels: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._saved: set[tuple[str, str]] = set()
        self._lock_cache: tuple[tuple[int, int] | None, Lockfile] = (None, Lockfile())

    async def resolve(self, name: str, label: str | None = None) -> tuple[PromptSpec, PromptRef]:
        spec = self.library.get(name)
        if label is not None:
            version = await self._label_version(name, label)
            if version != spec.version:
                spec = await asyncio.to_thread(self._stored_spec, name, version)
        elif (name, spec.version) not in self._saved:
            await asyncio.to_thread(self.remember, spec)
        return spec, PromptRef(name, spec.version, label, self.locked(name))

    def remember(self, spec: PromptSpec) -> None:
        """Save this version's definition in the registry (once per process and version)."""
        source = str(spec.path) if spec.path else None
        self.store().save_prompt_version(spec.name, spec.version, spec.definition(), source)
        self._saved.add((spec.name, spec.version))

    def locked(self, name: str) -> LockEntry | None:
        try:
            stat = self.lock_path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._lock_cache[0]:
            self._lock_cache = (stamp, Lockfile.read(self.lock_path) if stamp else Lockfile())
        return self._lock_cache[1].get(name)

    def store(self) -> Any:
        with self._store_lock:
            if self._store is None:
                from ..store import open_store

                self._store = open_store(self.store_url)
            return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    async def _label_version(self, name: str, label: str) -> str:
        cached = self._labels.get((name, label))
        now = time.monotonic()
        if cached is None or now - cached[0] > self.label_ttl:
            version = await asyncio.to_thread(self.store().get_label, name, label)
            cached = self._labels[(name, label)] = (now, version)
        if cached[1] is None:
            known = await asyncio.to_thread(self.store().labels, name)
            listing = ", ".join(sorted(known)) or "none yet"
            raise PromptNotFound(
                f"Prompt {name!r} has no label {label!r} (its labels: {listing}). "
                f"Point one at a version with `keel prompts promote {name} {label}`."
            )
        return cached[1]

    def _stored_spec(self, name: str, version: str) -> PromptSpec:
        row = self.store().get_prompt_version(name, version)
        if row is None:
            raise PromptNotFound(f"Version {version[:12]} of prompt {name!r} is not in the registry.")
        return PromptSpec.from_definition(name, row["definition"])
