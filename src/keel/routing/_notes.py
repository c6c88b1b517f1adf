"""What the routing stages keep in `call.notes`: the call's clock, its deadline, its attempts.

    call.notes["_started"]   monotonic time the first routing stage saw the call       (private)
    call.notes["_deadline"]  monotonic time the whole call must end by (absent: none)  (private)
    call.notes["attempts"]   one entry per attempt, oldest first, across every fallback
    call.notes["answered_by"], ["fallback_failures"]   see `FallbackStage`

Keys starting with "_" are meaningful in this process only and are left out of the trace.
Times in `attempts` are seconds since `_started`, so a trace shows how the call's time was spent.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import ProviderTimeout
from ..pipeline import Call

STARTED = "_started"
DEADLINE = "_deadline"
#: Characters of an error message an attempt entry keeps.
ERROR_CHARS = 300


def start_clock(call: Call, deadline: float | None) -> None:
    """Start the call's clock and deadline, unless an outer stage or an earlier target did."""
    if STARTED in call.notes:
        return
    now = time.monotonic()
    call.notes[STARTED] = now
    if deadline is not None:
        call.notes[DEADLINE] = now + deadline


def time_left(call: Call) -> float | None:
    """Seconds until the call's deadline (negative once passed); None without a deadline."""
    deadline = call.notes.get(DEADLINE)
    return None if deadline is None else deadline - time.monotonic()


def deadline_passed(call: Call) -> bool:
    left = time_left(call)
    return left is not None and left <= 0


def deadline_error(call: Call, when: str) -> ProviderTimeout:
    seconds = call.notes[DEADLINE] - call.notes[STARTED]
    target = call.target
    return ProviderTimeout(
        f"{target.provider.name}/{target.model}: the call's deadline of {seconds:g}s (routing.deadline) "
        f"passed {when}.",
        provider=target.provider.name,
    )


def describe_error(error: BaseException | None) -> dict[str, Any]:
    """An error as JSON-safe fields for the trace."""
    if error is None:
        return {"error_class": None, "error": None, "status": None}
    return {
        "error_class": type(error).__name__,
        "error": str(error)[:ERROR_CHARS],
        "status": getattr(error, "status", None),
    }


def log_attempt(call: Call, began: float, error: BaseException | None = None, *,
                delay: float | None = None, decision: str = "ok") -> None:
    """Append one attempt on `call.target` to `call.notes["attempts"]`.

    `delay` is the wait before the next attempt (None when none follows); `decision` says what
    the retry stage did next ("ok", "retry", or "stop: <why>").
    """
    started = call.notes.get(STARTED, began)
    target = call.target
    entry = {
        "provider": target.provider.name,
        "model": target.alias,
        "upstream_model": target.model,
        "start": round(began - started, 4),
        "end": round(time.monotonic() - started, 4),
        **describe_error(error),
        "delay": None if delay is None else round(delay, 4),
        "decision": decision,
    }
    call.notes.setdefault("attempts", []).append(entry)
