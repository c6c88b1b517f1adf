"""Re-running an unchanged suite: the scored answers of the last run are carried over, not asked
or scored again.

A run is keyed by the suite's content (settings, cases, prompt versions) and by everything else
that decides its answers and scores: the configured providers, models (parameters, prices,
fallbacks), routing and replay settings, the identity of each model's weights where the provider
knows it, today's rate of each model, the source of every `python` check's module and Keel's
version. A new run whose key equals that of a run that finished within the response cache's
time-to-live starts with that run's answers (those that did not fail, marked `cached`; each
keeps the trace of the call that produced it), and asks only the rest. Anything changed, and the
runner falls back on the response cache, call by call. `keel eval run --no-cache` does neither.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
from pathlib import Path
from typing import Any

import orjson

from .functions import PythonCheck
from .suite import Suite

#: Settings that decide what a model answers (the rest: where things are stored, served, limited).
ANSWER_SETTINGS = {"providers", "models", "routing", "replay", "default_model"}


async def run_key(client: Any, suite: Suite, content: str) -> tuple[str, bool]:
    """sha256 of the suite's content hash and of what, outside the suite, decides its scores; and
    whether a run of that key may be reused (not when a check's source cannot be read)."""
    checks = _check_sources(suite)
    document = {"suite": content, "keel": importlib.metadata.version("keel"),
                "settings": client.settings.model_dump(mode="json", include=ANSWER_SETTINGS),
                "models": {name: await _model_identity(client, name) for name in _models(client, suite)},
                "checks": checks}
    key = hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()
    return key, None not in checks.values()


def _models(client: Any, suite: Suite) -> list[str]:
    """The suite's models, its judge and, transitively, their fallbacks."""
    names = [*suite.config.models, *([suite.config.judge_model] if suite.config.judge_model else [])]
    seen: list[str] = []
    while names:
        name = names.pop()
        if name not in seen:
            seen.append(name)
            alias = client.settings.models.get(name)
            names.extend(alias.fallbacks if alias is not None else [])
    return sorted(seen)


async def _model_identity(client: Any, name: str) -> dict[str, Any]:
    target = client.resolve(name)
    try:
        fingerprint = await target.provider.fingerprint(target.model)
    except Exception:  # noqa: BLE001 - an unknowable identity keys on the rest, as the cache does
        fingerprint = None
    rate = client.prices.rate(target.provider.name, target.pricing_id, target.model)
    return {"provider": target.provider.name, "model": target.model, "fingerprint": fingerprint,
            "rate": repr(rate), "catalog": client.prices.catalog}


def _check_sources(suite: Suite) -> dict[str, str | None]:
    """sha256 of the module behind each `python` check (a changed check scores anew); None when
    its source cannot be read."""
    checks = {a.function: a for a in suite.all_assertions() if isinstance(a, PythonCheck)}
    sources: dict[str, str | None] = {}
    for function, check in checks.items():
        module = inspect.getmodule(check.load())
        path = inspect.getsourcefile(module) if module is not None else None
        sources[function] = hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    return sources
