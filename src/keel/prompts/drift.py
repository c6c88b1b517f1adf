"""Drift: how the prompts on disk (and the models they resolve to) differ from keel.lock.

Pure functions. The caller resolves model aliases (with its settings and providers) and passes
the current `ModelIdentity`; the old text of a changed prompt is not in the lock, so a diff of the
change comes from the store's registry (see `keel.prompts.diff`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError, PromptError
from .library import PromptLibrary
from .lockfile import LockEntry, Lockfile, ModelIdentity
from .spec import PromptSpec
from .version import short_version

DriftKind = Literal["prompt_changed", "model_changed", "params_changed", "not_on_disk", "not_locked", "invalid"]
_IDENTITY_FIELDS = ("alias", "provider", "model", "snapshot", "fingerprint")


@dataclass(frozen=True)
class Drift:
    """One difference between the lock (`old`) and now (`new`)."""

    name: str
    kind: DriftKind
    message: str
    old: Any = None
    new: Any = None


def compare(
    spec: PromptSpec, entry: LockEntry, model: ModelIdentity | None = None, params: dict[str, Any] | None = None
) -> list[Drift]:
    """Drifts of one prompt against its lock entry.

    `model` is what `spec.model` resolves to now (None: compare the alias only); fields that are
    None on either side (an unknown snapshot or fingerprint) are not compared. `params` are the
    effective params now (default: `spec.params`).
    """
    drifts = []
    if spec.version != entry.version:
        drifts.append(Drift(
            spec.name, "prompt_changed",
            f"{spec.name}: prompt changed since it was locked ({short_version(entry.version)} → {spec.short_version}); "
            "re-lock it after reviewing the change.",
            old=entry.version, new=spec.version,
        ))
    drifts.extend(_model_drift(spec, entry.model, model))
    current = spec.params if params is None else params
    if current != entry.params:
        drifts.append(Drift(
            spec.name, "params_changed", f"{spec.name}: params changed: {entry.params!r} → {current!r}.",
            old=entry.params, new=current,
        ))
    return drifts


def _model_drift(spec: PromptSpec, locked: ModelIdentity, current: ModelIdentity | None) -> list[Drift]:
    if current is None:
        if spec.model == locked.alias:
            return []
        changed = ["alias"]
        current_label = spec.model
    else:
        changed = [field for field in _IDENTITY_FIELDS if _differs(getattr(locked, field), getattr(current, field))]
        current_label = describe(current)
    if not changed:
        return []
    return [Drift(
        spec.name, "model_changed",
        f"{spec.name}: model changed ({', '.join(changed)}): {describe(locked)} → {current_label}.",
        old=locked, new=current if current is not None else spec.model,
    )]


def _differs(old: str | None, new: str | None) -> bool:
    """Unknown (None) on either side is not a difference."""
    return old is not None and new is not None and old != new


def describe(identity: ModelIdentity) -> str:
    """`alias (provider/model@snapshot, fingerprint …)` for messages."""
    target = f"{identity.provider}/{identity.model}" + (f"@{identity.snapshot}" if identity.snapshot else "")
    extra = f", fingerprint {identity.fingerprint}" if identity.fingerprint else ""
    return f"{identity.alias} ({target}{extra})"


def compare_all(
    library: PromptLibrary, lock: Lockfile, resolve: Callable[[str], ModelIdentity] | None = None
) -> list[Drift]:
    """Drifts of every prompt, sorted by name: changed, unlocked, no longer on disk, or unreadable.

    `resolve(spec.model)` gives the current model identity (None: compare aliases only); a
    ConfigError from it (e.g. UnknownModel) is reported as a model drift.
    """
    on_disk = set(library.names())
    drifts: list[Drift] = []
    for name in sorted(on_disk | set(lock.entries)):
        drifts.extend(_drifts_of(name, name in on_disk, library, lock.entries.get(name), resolve))
    return drifts


def _drifts_of(
    name: str, on_disk: bool, library: PromptLibrary, entry: LockEntry | None, resolve: Callable[[str], ModelIdentity] | None
) -> list[Drift]:
    if not on_disk:
        return [Drift(name, "not_on_disk", f"{name}: locked but no prompt file exists; remove it from the lock.", old=entry)]
    try:
        spec = library.get(name)
    except PromptError as exc:
        return [Drift(name, "invalid", f"{name}: cannot be loaded: {exc}", new=exc)]
    if entry is None:
        return [Drift(name, "not_locked", f"{name}: not in the lock yet; lock it.", new=spec.version)]
    return _compare_resolved(spec, entry, resolve)


def _compare_resolved(spec: PromptSpec, entry: LockEntry, resolve: Callable[[str], ModelIdentity] | None) -> list[Drift]:
    try:
        current = resolve(spec.model) if resolve else None
    except ConfigError as exc:  # e.g. UnknownModel: the alias no longer exists
        unresolved = Drift(spec.name, "model_changed", f"{spec.name}: model {spec.model!r} no longer resolves: {exc}", old=entry.model)
        return [d for d in compare(spec, entry) if d.kind != "model_changed"] + [unresolved]
    return compare(spec, entry, current)
