"""The budget ledger's Redis client (`keel.budgets._redis`) against real Redis servers.

Most tests use the shared Redis at KEEL_TEST_REDIS_URL (127.0.0.1:6379), under a random key
prefix deleted afterwards, and touch only their own connections and keys. What would disturb
other users of that server (a password, SCRIPT FLUSH) runs against a private `redis-server`
started for the test on a Unix socket.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keel.budgets import Bucket, Hold, RedisLedger
from keel.budgets._redis import Address, Redis, ReplyError, packed
from keel.budgets.ledger import to_units
from keel.errors import ConfigError, StoreError

from .conftest import REDIS_URL

D = Decimal
BUCKET = Bucket("b", "global", "2026-11-25", D("1"), True, expires_at=time.time() + 3600)


def test_urls() -> None:
    assert Address.parse("redis://127.0.0.1:6379/0") == Address("127.0.0.1", 6379)
    assert Address.parse("redis://localhost") == Address("localhost", 6379)
    assert Address.parse("redis://:p%40ss@redis.internal:7000/3") == Address("redis.internal", 7000, password="p@ss", db=3)
    assert Address.parse("redis://ann:pw@h/2") == Address("h", username="ann", password="pw", db=2)
    assert Address.parse("redis://h?db=5").db == 5
    tls = Address.parse("rediss://h:6380/1?ssl_cert_reqs=none")
    assert (tls.tls, tls.verify, tls.port, tls.db) == (True, False, 6380, 1)
    assert Address.parse("rediss://h").verify
    assert Address.parse("unix://:pw@/run/redis/redis.sock?db=4") == Address(path="/run/redis/redis.sock", password="pw", db=4)
    for wrong in ("http://h:6379", "redis://h/zero", "unix:///s.sock?db=x"):
        with pytest.raises(ConfigError, match=r"use redis://\[:password@\]host\[:port\]\[/db\]"):
            Address.parse(wrong)


def test_the_db_number_selects_the_database(redis_prefix: str) -> None:
    import redis

    async def scenario() -> None:
        client = Redis(Address.parse(REDIS_URL.rsplit("/", 1)[0] + "/5"))
        try:
            assert await client.call("SET", f"{redis_prefix}:db", "five") == b"OK"
        finally:
            await client.aclose()

    asyncio.run(scenario())
    sync = redis.Redis.from_url(REDIS_URL.rsplit("/", 1)[0] + "/5")
    try:
        assert sync.get(f"{redis_prefix}:db") == b"five"
    finally:
        sync.delete(f"{redis_prefix}:db")
        sync.close()


def test_pipelined_commands_answer_in_order_and_errors_stay_with_their_command(redis_prefix: str) -> None:
    async def scenario() -> None:
        client = Redis(Address.parse(REDIS_URL))
        try:
            await client.call("PING")  # connected: `send` now queues at once and returns a future
            counter, table = f"{redis_prefix}:n", f"{redis_prefix}:h"
            replies = [client.send("INCR", counter) for _ in range(500)]
            replies.insert(250, client.send("INCR", "1", "2"))  # wrong arity: an error reply
            hset = packed("HSET", table)
            replies.append(client.send("f", "v", head=hset))
            replies.append(client.send("HGET", table, "f"))
            done = await asyncio.gather(*replies, return_exceptions=True)
            assert done[:250] == list(range(1, 251)) and done[251:501] == list(range(251, 501))
            assert isinstance(done[250], ReplyError) and "wrong number of arguments" in str(done[250])
            assert done[501:] == [1, b"v"]
            assert await client.call("SCAN", 0, "MATCH", f"{redis_prefix}:*", "COUNT", 1000) is not None
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_timeout_says_how_long_it_waited_and_the_next_command_reconnects(redis_prefix: str) -> None:
    async def scenario() -> None:
        client = Redis(Address.parse(REDIS_URL), timeout=0.2)
        try:
            first = await client.call("CLIENT", "ID")
            with pytest.raises(TimeoutError, match=r"Redis did not answer within 0\.2 s"):
                await client.call("BLPOP", f"{redis_prefix}:never", 5)  # blocks this connection only
            assert await client.call("PING") == b"PONG"
            assert await client.call("CLIENT", "ID") != first
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_connection_the_server_closes_is_remade(redis_prefix: str) -> None:
    import redis

    def kill(client_id: int) -> None:
        admin = redis.Redis.from_url(REDIS_URL)
        try:
            assert admin.execute_command("CLIENT", "KILL", "ID", client_id) == 1
        finally:
            admin.close()

    async def scenario() -> None:
        client = Redis(Address.parse(REDIS_URL))
        try:
            first = await client.call("CLIENT", "ID")
            waiting = asyncio.ensure_future(client.call("BLPOP", f"{redis_prefix}:never", 5))
            await asyncio.sleep(0.05)
            await asyncio.to_thread(kill, first)  # mid-command
            with pytest.raises(ConnectionError, match="Redis closed the connection"):
                await waiting
            second = await client.call("CLIENT", "ID")
            assert second != first
            await asyncio.to_thread(kill, second)  # between commands
            await asyncio.sleep(0.05)
            assert await client.call("PING") == b"PONG"
        finally:
            await client.aclose()

    asyncio.run(scenario())

    async def ledger_scenario() -> None:
        ledger = RedisLedger(REDIS_URL, redis_prefix)
        try:
            assert await ledger.reserve("a", [Hold.of(BUCKET, D("0.1"))]) is None
            name = f"keel-budgets-{os.getpid()}"
            admin = redis.Redis.from_url(REDIS_URL)
            try:
                ids = [c["id"] for c in admin.client_list() if c.get("name") == name]
            finally:
                admin.close()
            assert len(ids) == 1
            await asyncio.to_thread(kill, int(ids[0]))
            await asyncio.sleep(0.05)
            await ledger.settle("a", [Hold.of(BUCKET, D("0.1"))], [to_units(D("0.05"))])
            [state] = await ledger.buckets("b", BUCKET.period)
            assert (state.spent, state.reserved) == (D("0.05"), 0)
        finally:
            await ledger.aclose()

    asyncio.run(ledger_scenario())


def test_wrong_credentials_say_so(redis_prefix: str) -> None:
    user = f"nobody-{os.urandom(4).hex()}"
    url = REDIS_URL.replace("redis://", f"redis://{user}:wrong@", 1)

    async def scenario() -> StoreError:
        ledger = RedisLedger(url, redis_prefix)
        try:
            with pytest.raises(StoreError) as error:
                await ledger.reserve("a", [Hold.of(BUCKET, D("0.1"))])
            return error.value
        finally:
            await ledger.aclose()

    message = asyncio.run(scenario()).message
    assert f"Redis refused user '{user}' and the password given in the URL: WRONGPASS" in message
    assert "wrong" not in message.replace("WRONGPASS", "") and f"{user}:***@" in message


def test_a_cancelled_reserve_releases_the_holds_it_placed(redis_prefix: str) -> None:
    """The caller goes away after the reserve was sent: the script still runs and places the hold;
    the ledger then releases it, rather than leave it for hold_ttl (15 minutes) to lapse."""

    async def scenario() -> None:
        ledger = RedisLedger(REDIS_URL, redis_prefix)
        try:
            assert await ledger.reserve("warm", [Hold.of(BUCKET, D("0.1"))]) is None  # connected
            await ledger.settle("warm", [Hold.of(BUCKET, D("0.1"))], [to_units(D(0))])
            other = Bucket("c", "global", BUCKET.period, D("1"), True, expires_at=BUCKET.expires_at)
            reserving = asyncio.ensure_future(ledger.reserve("gone", [Hold.of(other, D("0.4"))]))
            await asyncio.sleep(0)  # sent, not answered
            reserving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reserving
            for _ in range(100):
                states = await ledger.buckets("c", BUCKET.period)
                if states and states[0].reserved == 0:
                    break
                await asyncio.sleep(0.01)
            # The bucket exists: the reserve ran (a reserve that never reached Redis leaves none).
            assert [(s.spent, s.reserved) for s in states] == [(0, 0)]
            client = Redis(Address.parse(REDIS_URL))
            try:
                holds = await client.call("ZRANGE", f"{redis_prefix}:holds:c:{BUCKET.period}:global", 0, -1)
                seen = await client.call("HGETALL", f"{redis_prefix}:spend:c:{BUCKET.period}:global")
            finally:
                await client.aclose()
            assert holds == [] and b"h:gone" not in seen
        finally:
            await ledger.aclose()

    asyncio.run(scenario())


# -- a private server: password, Unix socket, SCRIPT FLUSH --------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Path]:
    """A redis-server of our own listening only on a Unix socket, password "s3cret"."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    socket = tmp_path / "redis.sock"
    proc = subprocess.Popen([server, "--port", "0", "--unixsocket", str(socket), "--requirepass", "s3cret",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("redis-server did not start")
            time.sleep(0.02)
        yield socket
    finally:
        proc.terminate()
        proc.wait(10)


def test_unix_socket_password_db_and_the_noscript_fallback(private_redis: Path) -> None:
    url = f"unix://:s3cret@{private_redis}?db=2"

    async def scenario() -> dict[str, Any]:
        ledger = RedisLedger(url, "keel-test")
        client = Redis(Address.parse(url))
        try:
            assert await client.call("SCRIPT", "FLUSH") == b"OK"
            assert await ledger.reserve("a", [Hold.of(BUCKET, D("0.3"))]) is None  # NOSCRIPT, then EVAL
            await ledger.settle("a", [Hold.of(BUCKET, D("0.3"))], [to_units(D("0.2"))])  # the same for the settle script
            assert await ledger.reserve("a2", [Hold.of(BUCKET, D("0.1"))]) is None  # EVALSHA: loaded now
            await ledger.settle("a2", [Hold.of(BUCKET, D("0.1"))], [to_units(D(0))])
            assert await client.call("SCRIPT", "FLUSH") == b"OK"  # e.g. Redis restarted, or failed over
            assert await ledger.reserve("b", [Hold.of(BUCKET, D("0.3"))]) is None
            await ledger.settle("b", [Hold.of(BUCKET, D("0.3"))], [to_units(D("0.2"))])
            [state] = await ledger.buckets("b", BUCKET.period)
            assert (state.spent, state.reserved) == (D("0.4"), 0)
            assert await client.call("DBSIZE") == 1  # the bucket's spend hash (its holds set is empty), in db 2
            info = (await client.call("INFO", "commandstats")).decode()
            return {line.split(":")[0]: line for line in info.splitlines() if line.startswith("cmdstat_eval")}
        finally:
            await client.aclose()
            await ledger.aclose()

    stats = asyncio.run(scenario())
    # Each script once after each flush, and the lease the first reserve asked for (refused: a
    # limit of 1 is too near for leases of 0.3; not asked again within a second).
    assert "calls=5," in stats["cmdstat_eval"]
    assert "calls=7," in stats["cmdstat_evalsha"]  # every script call tries the loaded script first

    async def no_password() -> str:
        client = Redis(Address.parse(f"unix://{private_redis}"))
        try:
            with pytest.raises(ReplyError) as error:
                await client.call("PING")
            return str(error.value)
        finally:
            await client.aclose()

    assert asyncio.run(no_password()).startswith("NOAUTH")
