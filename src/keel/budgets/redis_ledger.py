"""Budgets in Redis, shared by every gateway worker and host: each step is one Lua script, so a
check and its increment can never interleave with another worker's.

Per bucket, two keys (names and scope values percent-encoded):

    {prefix}:spend:{budget}:{period}:{scope}   hash: spent, reserved (units of 10⁻⁹), alerted,
                                               h:<hold id> → that hold's amount
    {prefix}:holds:{budget}:{period}:{scope}   sorted set: hold id → the time it lapses

`reserve` first drops lapsed holds (a worker that died mid-call), then checks every hard bucket
and, only if all fit, places every hold. `settle` removes the hold (unless it lapsed, in which
case it no longer counts as reserved) and adds the real cost. Keys expire two days after their
period ends (never for `total`). Amounts are passed to Redis as integer strings and compared in
Lua as doubles, exact for limits below ~9 million currency units (`ledger.MAX_UNITS`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote
from weakref import WeakKeyDictionary

from ..errors import ConfigError, StoreError
from .ledger import Bucket, BucketState, Crossing, Hold, Ledger, Refusal, from_units, to_units

_PURGE = """
local function purge(spend, holds, now)
  local lapsed = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  for _, id in ipairs(lapsed) do
    local amount = redis.call('HGET', spend, 'h:' .. id)
    if amount and amount ~= '0' then redis.call('HINCRBY', spend, 'reserved', '-' .. amount) end
    redis.call('HDEL', spend, 'h:' .. id)
  end
  if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', holds, '-inf', now) end
end
local function expire(spend, holds, at)
  if at ~= '0' then
    redis.call('EXPIREAT', spend, at)
    redis.call('EXPIREAT', holds, at)
  end
end
"""

#: KEYS: spend_1, holds_1, spend_2, holds_2, …
#: ARGV: now, hold id, hold lapses at; then per bucket: amount, limit, hard (1/0), expire at (0: never)
#: Returns {0} when every hold was placed, else {i, spent, reserved} of the bucket that refused.
RESERVE = _PURGE + """
local now, id, lapses = ARGV[1], ARGV[2], ARGV[3]
local n = #KEYS / 2
for i = 1, n do
  local spend, holds, a = KEYS[2 * i - 1], KEYS[2 * i], 3 + (i - 1) * 4
  purge(spend, holds, now)
  if ARGV[a + 3] == '1' then
    local spent = redis.call('HGET', spend, 'spent') or '0'
    local reserved = redis.call('HGET', spend, 'reserved') or '0'
    if tonumber(spent) + tonumber(reserved) + tonumber(ARGV[a + 1]) > tonumber(ARGV[a + 2]) then
      return {i, spent, reserved}
    end
  end
end
for i = 1, n do
  local spend, holds, a = KEYS[2 * i - 1], KEYS[2 * i], 3 + (i - 1) * 4
  redis.call('HINCRBY', spend, 'reserved', ARGV[a + 1])
  redis.call('HINCRBY', spend, 'spent', '0')
  redis.call('HSET', spend, 'h:' .. id, ARGV[a + 1])
  redis.call('ZADD', holds, lapses, id)
  expire(spend, holds, ARGV[a + 4])
end
return {0}
"""

#: KEYS as for RESERVE. ARGV: hold id; then per bucket: actual cost, limit, expire at.
#: Returns per bucket: spent after, and 1 when this settle took it past its limit first.
SETTLE = _PURGE + """
local id = ARGV[1]
local out = {}
for i = 1, #KEYS / 2 do
  local spend, holds, a = KEYS[2 * i - 1], KEYS[2 * i], 1 + (i - 1) * 3
  if redis.call('ZREM', holds, id) == 1 then
    local amount = redis.call('HGET', spend, 'h:' .. id)
    if amount and amount ~= '0' then redis.call('HINCRBY', spend, 'reserved', '-' .. amount) end
    redis.call('HDEL', spend, 'h:' .. id)
  end
  redis.call('HINCRBY', spend, 'spent', ARGV[a + 1])
  local spent = redis.call('HGET', spend, 'spent')
  local crossed = 0
  if tonumber(spent) > tonumber(ARGV[a + 2]) and redis.call('HSETNX', spend, 'alerted', '1') == 1 then crossed = 1 end
  expire(spend, holds, ARGV[a + 3])
  table.insert(out, spent)
  table.insert(out, crossed)
end
return out
"""

#: KEYS: holds_1, holds_2, … ARGV: hold id, lapses at. Moves the lapse time of a live hold.
RENEW = """
for i = 1, #KEYS do redis.call('ZADD', KEYS[i], 'XX', ARGV[2], ARGV[1]) end
return 0
"""


class RedisLedger(Ledger):
    """Budgets shared through Redis at `url`, under keys starting with `prefix`."""

    holds_lapse = True

    def __init__(self, url: str, prefix: str = "keel:budget", *, hold_ttl: float = 900.0, timeout: float = 5.0) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise ConfigError("Budgets in Redis need the package `redis`: pip install 'redis>=5'") from None
        self.url = url
        self.prefix = prefix
        self.hold_ttl = hold_ttl
        self.timeout = timeout
        # A Redis client belongs to the event loop it was made in: one per loop, made on first use.
        self._clients: WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = WeakKeyDictionary()

    async def reserve(self, hold_id: str, holds: Sequence[Hold]) -> Refusal | None:
        now = time.time()
        args: list[Any] = [repr(now), hold_id, repr(now + self.hold_ttl)]
        for hold in holds:
            args += [to_units(hold.amount), to_units(hold.bucket.limit), int(hold.bucket.hard), _expire_at(hold.bucket)]
        reply = await self._run(RESERVE, self._keys(holds), args)
        if int(reply[0]) == 0:
            return None
        refused = holds[int(reply[0]) - 1]
        return Refusal(refused, from_units(int(reply[1])), from_units(int(reply[2])))

    async def settle(self, hold_id: str, holds: Sequence[Hold], actual: Sequence[Decimal]) -> list[Crossing]:
        args: list[Any] = [hold_id]
        for hold, amount in zip(holds, actual, strict=True):
            args += [to_units(amount), to_units(hold.bucket.limit), _expire_at(hold.bucket)]
        reply = await self._run(SETTLE, self._keys(holds), args)
        return [
            Crossing(hold.bucket, from_units(int(reply[2 * i])))
            for i, hold in enumerate(holds)
            if int(reply[2 * i + 1]) == 1
        ]

    async def renew(self, hold_id: str, holds: Sequence[Hold]) -> None:
        keys = [self._key("holds", hold.bucket.budget, hold.bucket.period, hold.bucket.scope) for hold in holds]
        await self._run(RENEW, keys, [hold_id, repr(time.time() + self.hold_ttl)])

    async def buckets(self, budget: str, period: str) -> list[BucketState]:
        client = self._client()
        pattern = self._key("spend", budget, period, "") + "*"
        try:
            keys = sorted({key async for key in client.scan_iter(match=pattern, count=500)})
            states = []
            for key in keys:
                spent, reserved = await client.hmget(key, "spent", "reserved")
                scope = unquote(key.decode().rsplit(":", 1)[1])
                states.append(BucketState(budget, scope, period, from_units(int(spent or 0)), from_units(int(reserved or 0))))
            return states
        except Exception as exc:
            raise self._unreachable(exc) from exc

    async def aclose(self) -> None:
        clients = list(self._clients.items())
        self._clients.clear()
        loop = asyncio.get_running_loop()
        for owner, client in clients:
            if owner is loop:
                await client.aclose()

    # -- plumbing -----------------------------------------------------------------------------

    def _keys(self, holds: Sequence[Hold]) -> list[str]:
        keys = []
        for hold in holds:
            b = hold.bucket
            keys += [self._key("spend", b.budget, b.period, b.scope), self._key("holds", b.budget, b.period, b.scope)]
        return keys

    def _key(self, kind: str, budget: str, period: str, scope: str) -> str:
        return f"{self.prefix}:{kind}:{quote(budget, safe='')}:{period}:{quote(scope, safe='')}"

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            import redis.asyncio

            client = self._clients[loop] = redis.asyncio.Redis.from_url(
                self.url,
                client_name=f"keel-budgets-{os.getpid()}",
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
            )
        return client

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import NoScriptError

        client = self._client()
        try:
            try:
                return await client.evalsha(_sha(script), len(keys), *keys, *args)
            except NoScriptError:
                return await client.eval(script, len(keys), *keys, *args)
        except Exception as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> StoreError:
        return StoreError(
            f"The budget ledger in Redis ({_redacted(self.url)}) failed: {type(exc).__name__}: {exc}. "
            "Hard budgets refuse calls until it answers; check that Redis runs and `redis_url` in keel.toml.",
            url=_redacted(self.url),
        )


_SHAS = {script: hashlib.sha1(script.encode()).hexdigest() for script in (RESERVE, SETTLE, RENEW)}


def _sha(script: str) -> str:
    return _SHAS[script]


def _expire_at(bucket: Bucket) -> int:
    return 0 if bucket.expires_at is None else int(bucket.expires_at)


def _redacted(url: str) -> str:
    """The URL without its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
