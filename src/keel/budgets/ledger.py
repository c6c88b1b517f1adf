"""The ledger interface: what a budget has spent and holds in reserve, per bucket.

A bucket is one budget, one period (a UTC day, a month, or all time) and one scope value (e.g.
`tenant=acme`). Before a call, `reserve` puts a hold of its worst-case cost on every bucket the
call counts against, all or nothing: a hard bucket refuses when spent + reserved + hold would pass
its limit. After the call, `settle` drops the hold and adds what the call really cost.

Amounts cross the interface as Decimals and are kept as integers of 10⁻⁹ currency units
(`to_units`, rounded up), so both ledgers do the same exact arithmetic and a Redis Lua script can
compare them. A hold that is never settled (its process died) lapses after `hold_ttl` seconds;
live calls renew theirs (`renew`).

    Ledger            the interface
    ├── MemoryLedger  this process only (one gateway worker, or the library)
    └── RedisLedger   shared by every worker and host using the same Redis (redis_ledger.py)
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from functools import cached_property, lru_cache
from typing import NamedTuple

#: Ledger amounts are integers of this many currency units (10⁻⁹: a nano-dollar).
UNIT = Decimal("1e-9")
#: Prices per token are kept in picodollars (exact for per-million prices with up to 6 decimals).
PICOS_PER_UNIT = 1000
#: The largest amount kept exactly: Lua compares in doubles, exact below 2**53 units (~9 million).
MAX_UNITS = 2**53 - 1


@lru_cache(maxsize=4096)  # limits and worst cases repeat from call to call
def to_units(amount: Decimal) -> int:
    """A currency amount as ledger units, rounded up (a reservation never undercounts)."""
    return int((amount / UNIT).to_integral_value(rounding=ROUND_CEILING))


def from_units(units: int) -> Decimal:
    """Ledger units as a plain currency amount (`Decimal("1.5")`, not `1.500000000`)."""
    value = (Decimal(units) * UNIT).normalize()
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value


@lru_cache(maxsize=1024)  # the trace notes each hold's amount
def plain(amount: Decimal) -> str:
    """An amount for people: "0.000000123", "1.5", "10" (never "1.23E-7" or "1.500")."""
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class Bucket:
    """Where a hold goes: a budget's limit, in one period, for one scope value."""

    budget: str
    #: "global", "key=3fa2…", "tenant=acme", "feature=search", "prompt=summarize".
    scope: str
    #: "2026-11-25" (day), "2026-11" (month) or "total".
    period: str
    limit: Decimal
    hard: bool
    #: Unix time after which the bucket's figures may be forgotten (None: kept forever).
    expires_at: float | None = None

    @cached_property
    def key(self) -> tuple[str, str, str]:
        return self.budget, self.period, self.scope

    @cached_property
    def limit_units(self) -> int:
        return to_units(self.limit)


class Hold(NamedTuple):
    """A reservation of `units` (ledger units) on `bucket`, identified by the call's hold id. (A
    tuple: one is made per bucket per call.)"""

    bucket: Bucket
    units: int

    @classmethod
    def of(cls, bucket: Bucket, amount: Decimal) -> "Hold":
        """A hold of a currency amount (rounded up to whole units)."""
        return cls(bucket, to_units(amount))

    @property
    def amount(self) -> Decimal:
        return from_units(self.units)


@dataclass(frozen=True)
class Refusal:
    """Why `reserve` refused: the first hard bucket the hold did not fit in, and its figures."""

    hold: Hold
    spent: Decimal
    reserved: Decimal


@dataclass(frozen=True)
class Crossing:
    """A settle took a bucket's spending past its limit, for the first time this period."""

    bucket: Bucket
    spent: Decimal


@dataclass(frozen=True)
class BucketState:
    budget: str
    scope: str
    period: str
    spent: Decimal
    reserved: Decimal


#: Told the buckets a settle took past their limit (when it did).
Then = Callable[[list[Crossing]], None]


class Ledger(ABC):
    """Budget figures shared by every call that goes through the same ledger."""

    #: Seconds an unsettled hold lasts unless renewed (what a crashed process can leave behind).
    hold_ttl: float = 900.0
    @abstractmethod
    async def reserve(self, hold_id: str, holds: Sequence[Hold]) -> Refusal | None:
        """Place every hold, or none: None when placed, else the first hard bucket that refused."""

    @abstractmethod
    async def settle(self, hold_id: str, holds: Sequence[Hold], actual: Sequence[int]) -> list[Crossing]:
        """Drop the holds and add `actual[i]` (ledger units) to the spending of `holds[i].bucket`."""

    @abstractmethod
    def settle_later(self, hold_id: str, holds: Sequence[Hold], actual: Sequence[int], then: Then) -> None:
        """`settle` without waiting for it; `then(crossings)` if it took buckets past their limit."""

    async def drain(self) -> None:
        """Wait for the settles sent with `settle_later`."""

    def take_now(self, hold_id: str, holds: Sequence[Hold]) -> bool:
        """Place every hold without I/O or waiting, when the ledger can (True); else the caller
        awaits `reserve`, which also says why it refused. Holds placed so need no renewing."""
        return False

    async def renew(self, hold_id: str, holds: Sequence[Hold]) -> None:
        """Keep the holds of a call still in flight from lapsing."""

    @abstractmethod
    async def buckets(self, budget: str, period: str) -> list[BucketState]:
        """Every bucket of `budget` in `period` that has seen a call."""

    async def aclose(self) -> None:
        """Release connections."""


@dataclass(slots=True)
class _Figures:
    spent: int = 0
    reserved: int = 0
    alerted: bool = False
    expires_at: float | None = None


#: The figures of a bucket no call has reached yet (never changed).
_NONE = _Figures()


class MemoryLedger(Ledger):
    """Budgets kept in this process. Each process has its own figures: a gateway with several
    workers needs `redis_url` for its budgets to hold. Safe across threads and event loops: no
    operation awaits while holding the lock. Buckets of past periods are dropped as they expire.
    Holds need no ids here: a call settles exactly the holds it placed, once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._figures: dict[tuple[str, str, str], _Figures] = {}
        #: Seconds between sweeps of the buckets of past periods (made when a new bucket is).
        self.sweep_every = 60.0
        self._next_sweep = 0.0

    def take_now(self, hold_id: str, holds: Sequence[Hold]) -> bool:
        if len(holds) != 1:
            return self._reserve(holds) is None
        hold, bucket = holds[0], holds[0].bucket  # one budget: the common case, in one pass
        with self._lock:
            figures = self._figures.get(bucket.key) or self._bucket(bucket)
            if bucket.hard and figures.spent + figures.reserved + hold.units > bucket.limit_units:
                return False
            figures.reserved += hold.units
        return True

    async def reserve(self, hold_id: str, holds: Sequence[Hold]) -> Refusal | None:
        return self._reserve(holds)

    async def settle(self, hold_id: str, holds: Sequence[Hold], actual: Sequence[int]) -> list[Crossing]:
        crossings: list[Crossing] = []
        self.settle_later(hold_id, holds, actual, crossings.extend)
        return crossings

    def settle_later(self, hold_id: str, holds: Sequence[Hold], actual: Sequence[int], then: Then) -> None:
        crossings = []
        with self._lock:
            for hold, units in zip(holds, actual, strict=True):
                figures = self._figures.get(hold.bucket.key) or self._bucket(hold.bucket)
                figures.reserved -= hold.units
                figures.spent += units
                if figures.spent > hold.bucket.limit_units and not figures.alerted:
                    figures.alerted = True
                    crossings.append(Crossing(hold.bucket, from_units(figures.spent)))
        if crossings:
            then(crossings)

    def _reserve(self, holds: Sequence[Hold]) -> Refusal | None:
        with self._lock:
            for hold in holds:
                figures = self._figures.get(hold.bucket.key) or _NONE
                if hold.bucket.hard and figures.spent + figures.reserved + hold.units > hold.bucket.limit_units:
                    return Refusal(hold, from_units(figures.spent), from_units(figures.reserved))
            for hold in holds:
                self._bucket(hold.bucket).reserved += hold.units
        return None

    async def buckets(self, budget: str, period: str) -> list[BucketState]:
        with self._lock:
            return [
                BucketState(name, scope, when, from_units(f.spent), from_units(f.reserved))
                for (name, when, scope), f in sorted(self._figures.items())
                if name == budget and when == period
            ]

    def _bucket(self, bucket: Bucket) -> _Figures:
        figures = self._figures.get(bucket.key)
        if figures is None:
            if time.time() >= self._next_sweep:  # only new buckets add to what is kept
                self._drop_expired()
            figures = self._figures[bucket.key] = _Figures(expires_at=bucket.expires_at)
        return figures

    def _drop_expired(self) -> None:
        now = time.time()
        self._next_sweep = now + self.sweep_every
        for key in [k for k, f in self._figures.items() if f.expires_at is not None and f.expires_at < now and not f.reserved]:
            del self._figures[key]
