"""What `keel lock` pins and `keel check` re-verifies: each prompt's version, resolved model
identity (provider, model id, snapshot, fingerprint) and the token count of its reference input.

The fingerprint is the provider's own (a local GGUF's SHA-256) or, for APIs, the identity last
seen in a trace of that model (`system_fingerprint`, and the dated model id as snapshot).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import KeelError
from .drift import Drift, compare_all
from .lockfile import LockEntry, Lockfile, ModelIdentity
from .spec import PromptSpec


async def identity(client: Any, model: str) -> ModelIdentity:
    """The model `model` resolves to right now, as precisely as can be known offline."""
    target = client.resolve(model)
    fingerprint = await target.provider.fingerprint(target.model)
    snapshot = None
    if fingerprint is None:
        seen = await asyncio.to_thread(_last_seen, client, target.provider.name, target.model)
        if seen is not None:
            fingerprint = seen.get("fingerprint")
            upstream = seen.get("upstream_model")
            snapshot = upstream if upstream and upstream != target.model else None
    return ModelIdentity(alias=model, provider=target.provider.name, model=target.model, snapshot=snapshot, fingerprint=fingerprint)


async def reference_tokens(client: Any, spec: PromptSpec) -> int | None:
    """Prompt tokens of the rendered reference input, with the target model's own tokenizer."""
    if not spec.reference_input:
        return None
    target = client.resolve(spec.model)
    return await target.provider.count_prompt_tokens(spec.render_reference(), target.model)


async def entry_for(client: Any, spec: PromptSpec, baseline_run: str | None = None) -> LockEntry:
    await asyncio.to_thread(client.prompts.remember, spec)
    return LockEntry(
        version=spec.version,
        model=await identity(client, spec.model),
        params=spec.params,
        reference_tokens=await reference_tokens(client, spec),
        baseline_run=baseline_run,
    )


async def drifts(client: Any, lock: Lockfile) -> list[Drift]:
    """Every difference between the lock and the prompts and models as they are now."""
    library = client.prompts.library
    identities: dict[str, ModelIdentity | KeelError] = {}
    for name in library.names():
        try:
            model = library.get(name).model
        except KeelError:
            continue  # compare_all reports the unreadable prompt itself
        if model not in identities:
            try:
                identities[model] = await identity(client, model)
            except KeelError as exc:
                identities[model] = exc

    def resolve(model: str) -> ModelIdentity:
        found = identities.get(model)
        if isinstance(found, KeelError):
            raise found
        return found if found is not None else ModelIdentity(alias=model, provider="?", model="?")

    return compare_all(library, lock, resolve)


def _last_seen(client: Any, provider: str, model: str) -> dict[str, Any] | None:
    store = client.prompts.store()
    for row in store.list_traces(status="ok", limit=200):
        if row.get("provider") == provider and row.get("upstream_model", "").startswith(model):
            return row
    return None
