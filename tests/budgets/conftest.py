"""Budget fixtures: each ledger kind (memory; Redis under a random key prefix, deleted afterwards)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from keel.budgets import Ledger, MemoryLedger, RedisLedger

REDIS_URL = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

LedgerFactory = Callable[..., Ledger]


def redis_available() -> bool:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def delete_keys(pattern: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    if not redis_available():
        pytest.skip(f"no Redis at {REDIS_URL} (set KEEL_TEST_REDIS_URL)")
    prefix = f"keel-test:{os.urandom(6).hex()}"
    yield prefix
    delete_keys(prefix + ":*")


@pytest.fixture(params=["memory", "redis"])
def make_ledger(request: pytest.FixtureRequest) -> LedgerFactory:
    """Makes ledgers of one kind that share their figures (Redis ones share a random prefix)."""
    if request.param == "memory":
        memory = MemoryLedger()
        return lambda **_: memory
    prefix = request.getfixturevalue("redis_prefix")

    def make(**options: Any) -> Ledger:
        return RedisLedger(REDIS_URL, prefix, **options)

    return make
