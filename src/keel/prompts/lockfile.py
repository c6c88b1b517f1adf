"""keel.lock: the committed record of which prompt version runs on which model, with which params.

The file is YAML with a fixed layout (prompts sorted by name, a fixed key order per entry, params
sorted by key), so the same content always gives the same bytes and diffs stay small:

    # keel.lock: pinned prompt versions and model identities. Commit this file.
    lockfile: 1
    prompts:
      summarize:
        version: 3f0c…(64 hex)
        model:
          alias: local
          provider: local
          model: default
          snapshot: null
          fingerprint: null
        params:
          max_tokens: 200
          temperature: 0
        reference_tokens: 41
        baseline_run: null
        locked_at: '2025-01-02T03:04:05+00:00'

Writes are atomic (temp file in the same folder, fsync, rename). `update()` / `editing()` hold an
exclusive lock on the sidecar `keel.lock.lock` around read → change → write, so concurrent
writers never lose each other's entries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import PromptError
from ..files import atomic_write
from ._yaml import Document, check_keys, parse_document, read_document, validation_error

LOCKFILE_NAME = "keel.lock"
FORMAT_VERSION = 1
MAX_LOCKFILE_BYTES = 32 * 1024 * 1024
HEADER = "# keel.lock: pinned prompt versions and model identities. Commit this file.\n"


class ModelIdentity(BaseModel):
    """Which model a prompt was locked against. `snapshot`/`fingerprint` are None when unknown."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alias: str
    provider: str
    model: str
    snapshot: str | None = None
    fingerprint: str | None = None


class LockEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(pattern=r"^[0-9a-f]{64}$")
    model: ModelIdentity
    params: dict[str, Any] = Field(default_factory=dict)
    reference_tokens: int | None = Field(default=None, ge=0)
    baseline_run: str | None = None
    locked_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc).replace(microsecond=0))

    def to_data(self) -> dict[str, Any]:
        """The entry in file order."""
        return {
            "version": self.version,
            "model": self.model.model_dump(),
            "params": _sorted(self.params),
            "reference_tokens": self.reference_tokens,
            "baseline_run": self.baseline_run,
            "locked_at": self.locked_at.isoformat(),
        }


class Lockfile:
    """The entries of a keel.lock, by prompt name."""

    def __init__(self, entries: Mapping[str, LockEntry] | None = None) -> None:
        self.entries: dict[str, LockEntry] = dict(entries or {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lockfile) and self.entries == other.entries

    def __repr__(self) -> str:
        return f"Lockfile({sorted(self.entries)})"

    def get(self, name: str) -> LockEntry | None:
        return self.entries.get(name)

    def set(self, name: str, entry: LockEntry) -> None:
        self.entries[name] = entry

    def remove(self, name: str) -> bool:
        """Drop `name`; False when it was not locked."""
        return self.entries.pop(name, None) is not None

    # -- text ----------------------------------------------------------------------------------

    @classmethod
    def read(cls, path: Path | str) -> Lockfile:
        """Read `path`; a missing file is an empty lockfile; a malformed one raises PromptError at its line."""
        path = Path(path)
        if not path.exists():
            return cls()
        return cls._from_document(read_document(path, max_bytes=MAX_LOCKFILE_BYTES, fast=True))

    @classmethod
    def loads(cls, text: str, file: str = LOCKFILE_NAME) -> Lockfile:
        return cls._from_document(parse_document(text, file, fast=True))

    def dumps(self) -> str:
        prompts = {name: self.entries[name].to_data() for name in sorted(self.entries)}
        body = yaml.safe_dump(
            {"lockfile": FORMAT_VERSION, "prompts": prompts},
            sort_keys=False, default_flow_style=False, allow_unicode=True, width=100,
        )
        return HEADER + body

    def write(self, path: Path | str) -> None:
        """Atomically replace `path` (use `update()` when other processes may write too)."""
        atomic_write(Path(path), self.dumps().encode("utf-8"))

    @classmethod
    def _from_document(cls, doc: Document) -> Lockfile:
        data = doc.data
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise PromptError(f"{doc.file}:1: expected a mapping with `lockfile` and `prompts`.", file=doc.file, line=1)
        check_keys(doc, (), data, ["lockfile", "prompts"], "the lockfile")
        if data.get("lockfile", FORMAT_VERSION) != FORMAT_VERSION:
            raise PromptError(
                f"{doc.file}: lockfile format {data['lockfile']!r} is not supported (expected {FORMAT_VERSION}); "
                "upgrade Keel.", file=doc.file, line=1,
            )
        prompts = data.get("prompts") or {}
        for name, entry in prompts.items() if isinstance(prompts, dict) else ():
            check_keys(doc, ("prompts", name), entry, list(LockEntry.model_fields), f"the entry for {name!r}")
        try:
            return cls(_Entries.model_validate({"prompts": prompts}).prompts)
        except ValidationError as exc:
            raise validation_error(exc, doc, "the lockfile") from None


class _Entries(BaseModel):
    prompts: dict[str, LockEntry]


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


# -- writing safely ------------------------------------------------------------------------------


def sidecar(path: Path | str) -> Path:
    """The lock file that serializes writers: `keel.lock` → `keel.lock.lock` (do not commit it)."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def exclusive(path: Path | str) -> Iterator[None]:
    """Hold an exclusive flock on `path`'s sidecar (blocks until other writers are done)."""
    import fcntl  # POSIX only; imported here so the module still imports elsewhere

    with open(sidecar(path), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def editing(path: Path | str) -> Iterator[Lockfile]:
    """Locked read → your changes → atomic write (skipped when nothing changed or on error)."""
    path = Path(path)
    with exclusive(path):
        lock = Lockfile.read(path)
        before = dict(lock.entries)
        yield lock
        if lock.entries != before or not path.exists():
            lock.write(path)


def update(path: Path | str, change: Callable[[Lockfile], Any]) -> Lockfile:
    """Apply `change` to the lockfile at `path` under the writers' lock; returns the written lockfile."""
    with editing(path) as lock:
        change(lock)
    return lock
