"""Both ledgers do the same exact arithmetic: holds, settles, refusals, crossings, lapsed holds."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from keel.budgets import Bucket, Hold, MemoryLedger, RedisLedger
from keel.budgets.ledger import from_units, plain, to_units
from keel.budgets.scope import period_of

from .conftest import REDIS_URL, LedgerFactory

D = Decimal


def bucket(limit: str = "1", hard: bool = True, scope: str = "global", budget: str = "b", period: str = "2026-11-25") -> Bucket:
    return Bucket(budget, scope, period, D(limit), hard, expires_at=time.time() + 3600)


def test_units_round_up_and_print_plainly() -> None:
    assert to_units(D("0.000000001")) == 1
    assert to_units(D("0.0000000001")) == 1  # a reservation never undercounts
    assert to_units(D("1.5")) == 1_500_000_000
    assert str(from_units(1_500_000_000)) == "1.5"
    assert str(from_units(10_000_000_000)) == "10"
    assert from_units(123) == D("0.000000123")
    assert plain(from_units(123)) == "0.000000123"
    assert plain(D("1.500")) == "1.5"


def test_reserve_settle_math_is_exact(make_ledger: LedgerFactory) -> None:
    async def scenario() -> None:
        ledger = make_ledger()
        b = bucket("1")
        try:
            assert await ledger.reserve("a", [Hold.of(b, D("0.3"))]) is None
            assert await ledger.reserve("b", [Hold.of(b, D("0.3"))]) is None
            refusal = await ledger.reserve("c", [Hold.of(b, D("0.5"))])
            assert refusal is not None
            assert (refusal.spent, refusal.reserved, refusal.hold.amount) == (D(0), D("0.6"), D("0.5"))
            # "a" cost less than its worst case: the difference goes back to the budget.
            assert await ledger.settle("a", [Hold.of(b, D("0.3"))], [to_units(D("0.123456789"))]) == []
            [state] = await ledger.buckets("b", "2026-11-25")
            assert (state.scope, state.spent, state.reserved) == ("global", D("0.123456789"), D("0.3"))
            assert await ledger.reserve("c", [Hold.of(b, D("0.5"))]) is None  # 0.123456789 + 0.3 + 0.5 ≤ 1
            assert await ledger.reserve("d", [Hold.of(b, D("0.076543212"))]) is not None  # one unit too many
            assert await ledger.reserve("d", [Hold.of(b, D("0.076543211"))]) is None  # exactly the limit
            await ledger.settle("b", [Hold.of(b, D("0.3"))], [to_units(D("0.3"))])
            await ledger.settle("c", [Hold.of(b, D("0.5"))], [to_units(D(0))])
            await ledger.settle("d", [Hold.of(b, D("0.076543211"))], [to_units(D("0.076543211"))])
            [state] = await ledger.buckets("b", "2026-11-25")
            assert (state.spent, state.reserved) == (D("0.5"), D(0))
        finally:
            await ledger.aclose()

    asyncio.run(scenario())


def test_reserve_is_all_or_nothing_across_buckets(make_ledger: LedgerFactory) -> None:
    async def scenario() -> None:
        ledger = make_ledger()
        roomy, tight = bucket("10", scope="tenant=a"), bucket("1", scope="feature=x")
        try:
            refusal = await ledger.reserve("a", [Hold.of(roomy, D(2)), Hold.of(tight, D(2))])
            assert refusal is not None and refusal.hold.bucket == tight
            assert await ledger.buckets("b", "2026-11-25") == []  # nothing was held anywhere
            assert await ledger.reserve("a", [Hold.of(roomy, D(1)), Hold.of(tight, D(1))]) is None
            states = {s.scope: s.reserved for s in await ledger.buckets("b", "2026-11-25")}
            assert states == {"tenant=a": D(1), "feature=x": D(1)}
        finally:
            await ledger.aclose()

    asyncio.run(scenario())


def test_soft_buckets_never_refuse_and_report_the_first_crossing_once(make_ledger: LedgerFactory) -> None:
    async def scenario() -> None:
        ledger = make_ledger()
        soft = bucket("1", hard=False)
        try:
            for hold_id in "abc":
                assert await ledger.reserve(hold_id, [Hold.of(soft, D("0.6"))]) is None
            assert await ledger.settle("a", [Hold.of(soft, D("0.6"))], [to_units(D("0.6"))]) == []
            [crossing] = await ledger.settle("b", [Hold.of(soft, D("0.6"))], [to_units(D("0.6"))])
            assert (crossing.bucket, crossing.spent) == (soft, D("1.2"))
            assert await ledger.settle("c", [Hold.of(soft, D("0.6"))], [to_units(D("0.6"))]) == []  # once per period
            other_day = bucket("1", hard=False, period="2026-11-26")
            await ledger.reserve("d", [Hold.of(other_day, D(2))])
            assert len(await ledger.settle("d", [Hold.of(other_day, D(2))], [to_units(D(2))])) == 1
        finally:
            await ledger.aclose()

    asyncio.run(scenario())


def test_hard_bucket_past_its_limit_refuses_every_call(make_ledger: LedgerFactory) -> None:
    async def scenario() -> None:
        ledger = make_ledger()
        b = bucket("1")
        try:
            await ledger.reserve("a", [Hold.of(b, D("0.5"))])
            # The worst case was too low (e.g. an allowance for an image): the real cost counts.
            [crossing] = await ledger.settle("a", [Hold.of(b, D("0.5"))], [to_units(D("1.25"))])
            assert crossing.spent == D("1.25")
            refusal = await ledger.reserve("b", [Hold.of(b, D(0))])
            assert refusal is not None and refusal.spent == D("1.25")
        finally:
            await ledger.aclose()

    asyncio.run(scenario())


def test_the_memory_ledger_forgets_buckets_of_past_periods_unless_calls_hold_on_them() -> None:
    async def scenario() -> None:
        ledger = MemoryLedger()
        ledger.sweep_every = 0  # sweep whenever a new bucket is made
        past = [Bucket("b", "global", day, D("1"), True, expires_at=time.time() - 1) for day in ("2026-11-01", "2026-11-02")]
        assert await ledger.reserve("h1", [Hold(past[0], 5)]) is None
        await ledger.settle("h1", [Hold(past[0], 5)], [3])
        assert await ledger.reserve("h2", [Hold(past[1], 5)]) is None  # still held: kept
        assert [(s.period, s.spent) for s in await ledger.buckets("b", "2026-11-01")] == []
        assert [(s.period, s.reserved) for s in await ledger.buckets("b", "2026-11-02")] == [("2026-11-02", from_units(5))]
        assert await ledger.reserve("h3", [Hold(bucket(), 5)]) is None
        assert [s.reserved for s in await ledger.buckets("b", "2026-11-02")] == [from_units(5)]

    asyncio.run(scenario())


def test_concurrent_reservations_from_many_tasks_never_overshoot(redis_prefix: str) -> None:
    """400 tasks on 4 ledgers (4 connection pools, as 4 workers would have) race for one bucket."""
    limit, worst, real = D("5"), D("0.07"), D("0.0512345")
    b = bucket(str(limit))

    async def scenario() -> tuple[int, int, list[D]]:
        ledgers = [RedisLedger(REDIS_URL, redis_prefix) for _ in range(4)]
        observed: list[D] = []

        async def one(index: int) -> bool:
            ledger = ledgers[index % 4]
            await asyncio.sleep(random.uniform(0, 0.2))
            if await ledger.reserve(f"h{index}", [Hold.of(b, worst)]) is not None:
                return False
            [state] = await ledger.buckets("b", b.period)
            observed.append(state.spent + state.reserved)
            await asyncio.sleep(random.uniform(0, 0.01))
            await ledger.settle(f"h{index}", [Hold.of(b, worst)], [to_units(real)])
            return True

        try:
            await asyncio.gather(*(ledger.buckets("b", b.period) for ledger in ledgers for _ in range(20)))  # connect
            accepted = sum(await asyncio.gather(*(one(i) for i in range(400))))
            [state] = await ledgers[0].buckets("b", b.period)
            assert state.reserved == 0
            return accepted, int(state.spent / real), observed
        finally:
            for ledger in ledgers:
                await ledger.aclose()

    accepted, settled, observed = asyncio.run(scenario())
    assert settled == accepted
    assert max(observed) <= limit
    assert accepted * real <= limit
    assert accepted >= int(limit / worst)  # all that fit even if none had settled yet (71)
    assert accepted > int(limit / worst) + 5  # and settled calls gave back what they did not use


def test_holds_of_a_dead_process_lapse(redis_prefix: str) -> None:
    async def scenario() -> None:
        ledger = RedisLedger(REDIS_URL, redis_prefix, hold_ttl=0.3)
        b = bucket("1")
        try:
            assert await ledger.reserve("crashed", [Hold.of(b, D("0.8"))]) is None
            assert await ledger.reserve("live", [Hold.of(b, D("0.8"))]) is not None
            await asyncio.sleep(0.4)
            assert await ledger.reserve("live", [Hold.of(b, D("0.8"))]) is None
            [state] = await ledger.buckets("b", b.period)
            assert state.reserved == D("0.8")
            # A live call renews its hold; settling a lapsed hold does not release it twice.
            await asyncio.sleep(0.2)
            await ledger.renew("live", [Hold.of(b, D("0.8"))])
            await asyncio.sleep(0.2)
            assert await ledger.reserve("other", [Hold.of(b, D("0.3"))]) is not None  # "live" still held
            await ledger.settle("crashed", [Hold.of(b, D("0.8"))], [to_units(D("0.1"))])
            [state] = await ledger.buckets("b", b.period)
            assert (state.spent, state.reserved) == (D("0.1"), D("0.8"))
        finally:
            await ledger.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("period", "now", "label", "until"),
    [
        ("day", datetime(2026, 11, 25, 23, 59, tzinfo=UTC), "2026-11-25", datetime(2026, 11, 28, tzinfo=UTC)),
        ("month", datetime(2026, 11, 25, tzinfo=UTC), "2026-11", datetime(2026, 12, 3, tzinfo=UTC)),
        ("month", datetime(2026, 12, 31, 23, tzinfo=UTC), "2026-12", datetime(2027, 1, 3, tzinfo=UTC)),
        ("total", datetime(2026, 12, 31, tzinfo=UTC), "total", None),
    ],
)
def test_periods_are_utc_and_kept_two_days_after_they_end(period: str, now: datetime, label: str, until: datetime | None) -> None:
    assert period_of(period, now) == (label, until.timestamp() if until else None)


def test_redis_keys_name_budget_period_and_scope_and_expire(redis_prefix: str) -> None:
    import redis

    day, expires = period_of("day", datetime.now(UTC))
    b = Bucket("team: a*b", "tenant=ac:me", day, D(1), True, expires)
    forever = Bucket("all", "global", "total", D(1), True, None)

    async def scenario() -> None:
        ledger = RedisLedger(REDIS_URL, redis_prefix)
        try:
            await ledger.reserve("h", [Hold.of(b, D("0.1")), Hold.of(forever, D("0.1"))])
            [state] = await ledger.buckets("team: a*b", day)
            assert state.scope == "tenant=ac:me"
            assert await ledger.buckets("team: a", day) == []  # names are quoted, not patterns
        finally:
            await ledger.aclose()

    asyncio.run(scenario())
    client = redis.Redis.from_url(REDIS_URL)
    try:
        spend = f"{redis_prefix}:spend:team%3A%20a%2Ab:{day}:tenant%3Dac%3Ame"
        assert client.hget(spend, "reserved") == b"100000000"
        assert client.expiretime(spend) == int(expires)
        assert client.expiretime(f"{redis_prefix}:holds:team%3A%20a%2Ab:{day}:tenant%3Dac%3Ame") == int(expires)
        assert client.expiretime(f"{redis_prefix}:spend:all:total:global") == -1  # never expires
    finally:
        client.close()
