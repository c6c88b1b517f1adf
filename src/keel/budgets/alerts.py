"""Alerts when a budget's spending passes its limit: a log warning, and the budget's webhook.

The ledger reports a crossing once per bucket and period. The webhook gets a JSON POST

    {"budget": "team", "scope": "tenant=acme", "period": "2026-11", "limit": "100", "spent": "100.42"}

sent in the background with a bounded timeout: a slow or failing webhook never delays or fails
the call, it is logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..settings import BudgetSettings
from .ledger import Crossing, plain

log = logging.getLogger("keel.budgets")


class Alerts:
    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._pending: set[asyncio.Task[None]] = set()

    def crossed(self, budget: BudgetSettings, crossing: Crossing) -> None:
        bucket = crossing.bucket
        log.warning(
            "Budget %r (%s, %s) passed its limit: spent %s of %s%s.",
            budget.name, bucket.scope, bucket.period, plain(crossing.spent), plain(bucket.limit),
            "" if budget.hard else " (soft budget: calls continue)",
        )
        if budget.webhook:
            payload = {
                "budget": budget.name,
                "scope": bucket.scope,
                "period": bucket.period,
                "limit": plain(bucket.limit),
                "spent": plain(crossing.spent),
            }
            task = asyncio.get_running_loop().create_task(self._post(budget.webhook, payload))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _post(self, url: str, payload: dict[str, Any]) -> None:
        try:
            import aiohttp

            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(url, json=payload) as response:
                    if response.status >= 400:
                        log.warning("Budget webhook %s answered HTTP %s for budget %r.", url, response.status, payload["budget"])
        except Exception as exc:  # an alert must never fail anything
            log.warning("Budget webhook %s failed for budget %r: %s: %s", url, payload["budget"], type(exc).__name__, exc)

    async def drain(self) -> None:
        """Wait for webhooks still being sent (each bounded by the timeout)."""
        loop = asyncio.get_running_loop()
        pending = [task for task in self._pending if task.get_loop() is loop]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
