"""Budgets: spending limits that hold under concurrency, by reserving before and settling after.

    BudgetStage          the pipeline stage (stage.py): reserve worst case → call → settle real cost
    ├── scope.py         which bucket a call counts against: scope value and UTC period
    ├── worst_case.py    the most a call can cost, over its model and fallbacks
    ├── Ledger           spent and reserved per bucket (ledger.py), behind one interface:
    │   ├── MemoryLedger     this process only
    │   └── RedisLedger      shared by gateway workers and hosts (Lua: check-and-reserve is atomic,
    │                        redis_scripts.py), over _redis.py, a lean pipelining Redis client;
    │                        far from a limit, calls reserve on the process's leases (leases.py)
    ├── alerts.py        warning + webhook when a bucket first passes its limit
    └── budget_status    figures per bucket, for `keel budgets`

`with_budgets` wraps a stage when budgets are configured: with `redis_url` the ledger is Redis,
else memory. A gateway run with several workers (`keel serve --workers N`) must set `redis_url`:
with the memory ledger every worker keeps, and enforces, its own copy of each budget, so together
they may spend N times the limit.
"""

from __future__ import annotations

from ..cost.pricing import PriceBook
from ..pipeline import Stage
from ..settings import Settings
from .alerts import Alerts as Alerts
from .ledger import Bucket as Bucket
from .ledger import BucketState as BucketState
from .ledger import Hold as Hold
from .ledger import Ledger as Ledger
from .ledger import MemoryLedger as MemoryLedger
from .redis_ledger import RedisLedger as RedisLedger
from .stage import BudgetStage as BudgetStage
from .status import budget_status as budget_status
from .worst_case import Candidates


def open_ledger(settings: Settings) -> Ledger:
    """The ledger the settings call for: Redis when `redis_url` is set, else this process's memory."""
    if settings.redis_url:
        return RedisLedger(settings.redis_url)
    return MemoryLedger()


def with_budgets(inner: Stage, settings: Settings, prices: PriceBook, ledger: Ledger | None = None) -> Stage:
    """`inner` wrapped in a BudgetStage for `settings.budgets`; `inner` itself when there are none."""
    if not settings.budgets:
        return inner
    return BudgetStage(inner, settings.budgets, ledger or open_ledger(settings), prices, models=Candidates(settings))
