"""Leases: a share of a bucket's headroom that one process reserves in Redis and hands out to its
calls without asking Redis each time.

A call far from its budget's limit should not pay a Redis round trip to learn that it fits. So
a process leases each bucket it uses: `LEASE_CALLS` holds of its calls' size, reserved in Redis
under the process's lease id like any hold, asked for in the background (no call waits for it)
when less than half a lease is left. A lease used up within `GROW_WITHIN` seconds of its last
top-up is asked for twice as large next time (up to `MAX_LEASE_CALLS` holds), so a busy process
tops up a few times a second rather than every few calls. Redis grants it only while the bucket's
headroom (limit − spent − reserved, leases included) is at least `HEADROOM_FACTOR` times the
lease; refused, a lease is asked for again at a quarter of the size, down to `LEASE_CALLS`, so
near a limit there are no leases and every call reserves in Redis, exactly as without them.
Calls whose holds fit in their buckets' leases take them here, and settle here; the spending is
flushed to Redis every `FLUSH_INTERVAL` seconds, moving it from the lease's reservation to `spent`.

What holds: a lease is a reservation in Redis, so a hard limit is never passed, whatever every
process's calls do with their leases. What it costs: another process's unused lease can make a
call near the limit be refused while money is left; a lease is small against the headroom it was
granted from (at most 1/`HEADROOM_FACTOR` of it), is given back as soon as Redis grants no more
(or after `IDLE_RELEASE` seconds unused, or on close), and lapses with the process like any hold.
Spending in a process that dies before its flush is not counted (at most `FLUSH_INTERVAL`'s).

This module keeps the figures; `RedisLedger` does the talking.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .ledger import Bucket, Hold

#: Holds of the asking call's size that a lease is asked for at first, and at most.
LEASE_CALLS = 32
MAX_LEASE_CALLS = 1024
#: A top-up asked within this many seconds of the last one is twice as large.
GROW_WITHIN = 1.0
#: A lease is granted only while the headroom left is at least this many times the lease.
HEADROOM_FACTOR = 64
#: Seconds between flushes of the spending settled on leases.
FLUSH_INTERVAL = 0.05
#: Seconds unused after which a lease is given back.
IDLE_RELEASE = 1.0


@dataclass(slots=True)
class Lease:
    """This process's share of one bucket, in ledger units."""

    id: str
    bucket: Bucket
    #: Reserved in Redis under `id`, as far as this process knows.
    granted: int = 0
    #: Taken by calls in flight.
    held: int = 0
    #: Settled by calls, not yet flushed to Redis.
    unflushed: int = 0
    #: A flush of this many units is on its way.
    flushing: int = 0
    #: A top-up is on its way (one at a time).
    asking: bool = False
    #: Holds of the asking call's size asked for at the next top-up.
    calls: int = LEASE_CALLS
    #: When the last top-up was asked for (monotonic time).
    asked_at: float = -GROW_WITHIN
    #: Fewer units free than this: a top-up is due.
    low: int = 0
    #: Being given back (Redis granted no top-up, or unused): no call takes from it.
    closing: bool = False
    #: Redis granted no top-up: not asked again before (monotonic time).
    denied_until: float = 0.0
    used_at: float = field(default_factory=time.monotonic)
    renewed_at: float = field(default_factory=time.monotonic)

    @property
    def free(self) -> int:
        return self.granted - self.held - self.unflushed - self.flushing


class LeaseBook:
    """The leases of one process (one event loop), by bucket key; no I/O, no awaiting."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.leases: dict[tuple[str, str, str], Lease] = {}
        #: Hold id → the lease each of its holds took its units from.
        self.taken: dict[str, list[Lease]] = {}
        #: The last `take` left a lease low: `to_lease` has work (it is not asked on every call).
        self.low = False
        self._count = 0

    def take(self, hold_id: str, holds: Sequence[Hold]) -> bool:
        """Every hold from its bucket's lease, or none (False: ask Redis)."""
        leases = []
        for hold in holds:
            lease = self.leases.get(hold.bucket.key)
            if lease is None or lease.closing or lease.free < hold.units:
                return False
            leases.append(lease)
        now = time.monotonic()
        for hold, lease in zip(holds, leases):
            lease.held += hold.units
            lease.used_at = now
            if lease.free < lease.low:
                self.low = True
        self.taken[hold_id] = leases
        return True

    def settle(self, hold_id: str, holds: Sequence[Hold], actual: Sequence[int]) -> bool:
        """Settle a call whose holds came from leases (False: they did not)."""
        leases = self.taken.pop(hold_id, None)
        if leases is None:
            return False
        for hold, lease, units in zip(holds, leases, actual):
            lease.held -= hold.units
            lease.unflushed += units
        return True

    def to_lease(self, holds: Sequence[Hold]) -> list[tuple[Lease, int]]:
        """The leases to ask for (topped up) now, for calls like this one: (lease, units). Asked
        when less than half a lease is free, one request at a time per lease, and not again
        for `IDLE_RELEASE` seconds after Redis said no to the smallest."""
        out, now, self.low = [], time.monotonic(), False
        for hold in holds:
            lease = self.leases.get(hold.bucket.key)
            if lease is None:
                self._count += 1
                lease = self.leases[hold.bucket.key] = Lease(f"{self.prefix}L{self._count:x}", hold.bucket)
            enough = lease.free >= hold.units * lease.calls // 2
            if lease.asking or hold.units <= 0 or enough or now < lease.denied_until:
                continue
            if lease.closing:
                if lease.held or lease.granted:
                    continue  # still being given back
                lease.closing = False
            if now - lease.asked_at < GROW_WITHIN:
                lease.calls = min(lease.calls * 2, MAX_LEASE_CALLS)
            want = hold.units * lease.calls
            lease.asking, lease.asked_at, lease.low = True, now, want // 2
            out.append((lease, want))
        return out

    def leased(self, lease: Lease, grant: int | None) -> None:
        """Redis granted `grant` units more (0: the bucket is too near its limit; None: failed)."""
        lease.asking = False
        if grant:
            lease.granted += grant
        elif grant == 0 and lease.calls > LEASE_CALLS:  # too large for the headroom left: smaller next call
            lease.calls, lease.asked_at = max(lease.calls // 4, LEASE_CALLS), -GROW_WITHIN
        elif grant == 0:
            lease.closing, lease.denied_until = True, time.monotonic() + IDLE_RELEASE

    def due(self, renew_every: float) -> list[tuple[Lease, int, bool]]:
        """The flushes to send now: (lease, units spent to move from it, give the rest back?).
        Marks them on their way; `flushed` takes Redis's answer."""
        now, out = time.monotonic(), []
        for lease in list(self.leases.values()):
            if lease.flushing or lease.asking:
                continue
            idle = now - lease.used_at >= IDLE_RELEASE
            release = (lease.closing or idle) and lease.held == 0
            if not (lease.unflushed or release or now - lease.renewed_at >= renew_every):
                continue
            if release and not lease.granted and not lease.unflushed:
                if now >= lease.denied_until:
                    del self.leases[lease.bucket.key]  # nothing reserved: forget it
                continue
            lease.closing = lease.closing or release
            lease.flushing, lease.unflushed, lease.renewed_at = lease.unflushed, 0, now
            out.append((lease, lease.flushing, release))
        return out

    def flushed(self, lease: Lease, left: int | None) -> None:
        """Redis moved the flush; `left` is what it still holds for the lease (None: the flush failed)."""
        if left is None:
            lease.unflushed += lease.flushing  # sent again next time
        else:
            lease.granted = left
        lease.flushing = 0
        if lease.closing and not lease.held and not lease.unflushed and not lease.granted \
                and time.monotonic() >= lease.denied_until:
            self.leases.pop(lease.bucket.key, None)
