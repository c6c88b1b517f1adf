"""Routing: reliability as pipeline stages, each a wrapper with the Stage interface.

    FallbackStage         the model, then its `fallbacks`, until one answers
    └─ RetryStage         backoff with full jitter, Retry-After, the call's deadline
       └─ CircuitBreakerStage   fail fast on an upstream that keeps failing
          └─ ConcurrencyLimitStage   at most `max_concurrency` calls per provider
             └─ AttemptTimeoutStage  `attempt_timeout` per attempt
                └─ inner (the provider)

`build_routing` composes them from the settings; the client puts the result between recording
and the provider. What the stages learn goes to `call.notes` (see `_notes`).
"""

from __future__ import annotations

from collections.abc import Callable

from ..pipeline import Stage, Target
from ..settings import Settings
from .circuit import Breakers as Breakers
from .circuit import CircuitBreakerStage as CircuitBreakerStage
from .circuit import CircuitOpen as CircuitOpen
from .concurrency import ConcurrencyLimitStage as ConcurrencyLimitStage
from .fallback import FallbackStage as FallbackStage
from .retry import RetryStage as RetryStage
from .timeout import AttemptTimeoutStage as AttemptTimeoutStage


def build_routing(inner: Stage, settings: Settings, resolve: Callable[[str], Target]) -> Stage:
    """The routing stages around `inner`, outermost first as drawn above."""
    routing = settings.routing
    if not routing.enabled:
        return inner

    def fallbacks_for(target: Target) -> list[str]:
        model = settings.models.get(target.alias)
        return list(model.fallbacks) if model is not None else []

    # Stages with nothing to do under these settings are left out: each costs µs per request.
    stage: Stage = AttemptTimeoutStage(inner, routing) if routing.attempt_timeout is not None else inner
    if any(p.max_concurrency for p in settings.providers.values()):
        stage = ConcurrencyLimitStage(stage)
    stage = CircuitBreakerStage(stage, routing)
    stage = RetryStage(stage, routing)
    return FallbackStage(stage, resolve, fallbacks_for)
