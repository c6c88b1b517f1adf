"""Leases on the Redis ledger, against a real Redis: far from a limit a process reserves on its own
share, near it every call asks Redis; a hard limit holds either way; leases are flushed, given
back and lapse with their process."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from decimal import Decimal

from keel.budgets import Bucket, Hold, RedisLedger
from keel.budgets.leases import HEADROOM_FACTOR, IDLE_RELEASE, LEASE_CALLS, MAX_LEASE_CALLS
from keel.budgets.ledger import from_units

from .conftest import REDIS_URL

UNIT = 1_000  # ledger units per hold in these tests
ROOMY = Decimal(UNIT * LEASE_CALLS * HEADROOM_FACTOR * 4) / 10**9  # room for leases
TIGHT = Decimal(UNIT * LEASE_CALLS * HEADROOM_FACTOR // 2) / 10**9  # too near the limit for any


def bucket(limit: Decimal, hard: bool = True) -> Bucket:
    return Bucket("lease", "global", "2026-12-02", limit, hard, None)


async def figures(ledger: RedisLedger, b: Bucket) -> tuple[int, int]:
    [state] = await ledger.buckets(b.budget, b.period)
    return int(state.spent * 10**9), int(state.reserved * 10**9)


def test_far_from_its_limit_a_process_reserves_on_its_lease(redis_prefix: str) -> None:
    async def scenario() -> None:
        ledger, b = RedisLedger(REDIS_URL, redis_prefix), bucket(ROOMY)
        try:
            holds = [Hold(b, UNIT)]
            assert await ledger.reserve("h0", holds) is None  # asks Redis, and for a lease meanwhile
            await ledger.idle()
            for i in range(1, 10):
                assert await ledger.reserve(f"h{i}", holds) is None
            # The other nine took from the lease: Redis holds the first one's hold and the lease.
            assert await figures(ledger, b) == (0, UNIT + LEASE_CALLS * UNIT)
            for i in range(10):
                ledger.settle_later(f"h{i}", holds, [UNIT // 2], lambda crossings: None)
            await ledger.drain()
            assert await figures(ledger, b) == (10 * UNIT // 2, 0)  # flushed and given back
        finally:
            await ledger.aclose()

    asyncio.run(scenario())


def test_a_busy_process_asks_for_larger_leases_and_smaller_ones_near_the_limit(redis_prefix: str) -> None:
    """Used up quickly, each top-up doubles, so a busy process asks Redis a few times a second,
    not every few calls; near the limit a refused lease is asked for again smaller."""
    calls = 4 * MAX_LEASE_CALLS
    roomy = Decimal(UNIT * MAX_LEASE_CALLS * HEADROOM_FACTOR * 2) / 10**9

    async def taken_and_leased(limit: Decimal) -> tuple[int, int]:
        """Reserve `calls` holds of UNIT (none settled): Redis's reserved figure less what the calls hold."""
        ledger, b = RedisLedger(REDIS_URL, redis_prefix), Bucket(f"lease-{limit}", "global", "2026-12-02", limit, True, None)
        try:
            for i in range(calls):
                assert await ledger.reserve(f"h{i}", [Hold(b, UNIT)]) is None
                if i % 8 == 0:
                    await ledger.idle()  # the top-ups asked meanwhile land
            await ledger.idle()
            spent, reserved = await figures(ledger, b)
            return spent, reserved - calls * UNIT
        finally:
            await ledger.aclose()

    spent, leased = asyncio.run(taken_and_leased(roomy))
    # Unused lease left: more than the first lease's size could ever leave (1.5 × 32 holds).
    assert spent == 0 and leased > 4 * LEASE_CALLS * UNIT
    # Room for 32-hold leases only: the larger ones are refused, and the process keeps leasing small ones.
    tight = Decimal(UNIT * (calls + LEASE_CALLS * HEADROOM_FACTOR * 2)) / 10**9
    spent, leased = asyncio.run(taken_and_leased(tight))
    assert spent == 0 and 0 < leased <= 2 * LEASE_CALLS * UNIT


def test_near_its_limit_every_call_reserves_in_redis(redis_prefix: str) -> None:
    async def scenario() -> None:
        ledger, b = RedisLedger(REDIS_URL, redis_prefix), bucket(TIGHT)
        try:
            for i in range(5):
                assert await ledger.reserve(f"h{i}", [Hold(b, UNIT)]) is None
                assert await figures(ledger, b) == (0, (i + 1) * UNIT)  # no lease: each hold counted as itself
        finally:
            await ledger.aclose()

    asyncio.run(scenario())


def test_processes_on_leases_never_pass_a_hard_limit(redis_prefix: str) -> None:
    """Two ledgers (two gateway workers) spend a roomy budget down to its limit, calls racing."""
    limit_units = UNIT * LEASE_CALLS * HEADROOM_FACTOR * 2

    async def scenario() -> tuple[int, int, tuple[int, int]]:
        b = bucket(from_units(limit_units))
        workers = [RedisLedger(REDIS_URL, redis_prefix), RedisLedger(REDIS_URL, redis_prefix)]
        spent, refused = 0, 0

        async def call(ledger: RedisLedger, i: int) -> None:
            nonlocal spent, refused
            worst = random.randint(UNIT // 2, UNIT)
            holds = [Hold(b, worst)]
            if await ledger.reserve(f"c{i}", holds) is not None:
                refused += 1
                return
            await asyncio.sleep(0)
            real = random.randint(0, worst)
            spent += real
            ledger.settle_later(f"c{i}", holds, [real], lambda crossings: None)

        try:
            for start in range(0, 8 * limit_units // UNIT, 64):
                await asyncio.gather(*(call(workers[i % 2], i) for i in range(start, start + 64)))
            for ledger in workers:
                await ledger.drain()
            return spent, refused, await figures(workers[0], b)
        finally:
            for ledger in workers:
                await ledger.aclose()

    spent, refused, (ledger_spent, reserved) = asyncio.run(scenario())
    assert ledger_spent == spent <= limit_units and reserved == 0
    # Spent down to the limit, less at most what two workers' leases could strand; then refused.
    assert refused and spent > limit_units - 2 * LEASE_CALLS * UNIT


def test_a_lease_lapses_with_its_process_and_an_idle_one_is_given_back(redis_prefix: str) -> None:
    b = bucket(ROOMY)
    # A process that takes a lease and dies: no flush, no release.
    dies = (
        "import asyncio, os\n"
        "from decimal import Decimal\n"
        "from keel.budgets import Bucket, Hold, RedisLedger\n"
        "async def main():\n"
        f"    b = Bucket('lease', 'global', '2026-12-02', Decimal('{ROOMY}'), True, None)\n"
        f"    ledger = RedisLedger('{REDIS_URL}', '{redis_prefix}', hold_ttl=1)\n"
        f"    assert await ledger.reserve('gone', [Hold(b, {UNIT})]) is None\n"
        "    await ledger.idle()\n"
        "    os._exit(0)\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", dies], check=True, timeout=60)

    async def survivor() -> None:
        ledger = RedisLedger(REDIS_URL, redis_prefix)
        try:
            assert await figures(ledger, b) == (0, UNIT + LEASE_CALLS * UNIT)
            time.sleep(1.1)
            assert await ledger.reserve("alive", [Hold(b, UNIT)]) is None  # the dead one's holds lapsed
            await ledger.idle()
            assert await figures(ledger, b) == (0, UNIT + LEASE_CALLS * UNIT)  # its own hold and lease
            ledger.settle_later("alive", [Hold(b, UNIT)], [UNIT], lambda crossings: None)
            await asyncio.sleep(IDLE_RELEASE + 0.3)  # unused: flushed, then given back
            assert await figures(ledger, b) == (UNIT, 0)
        finally:
            await ledger.aclose()

    asyncio.run(survivor())
