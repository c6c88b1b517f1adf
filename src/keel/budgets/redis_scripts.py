"""The Lua scripts of the Redis budget ledger (redis_ledger.py): each step one script, so a check
and its increment never interleave with another worker's. Amounts are integer strings of ledger
units, compared in Lua as doubles (exact below `ledger.MAX_UNITS`)."""

from __future__ import annotations

import hashlib

from .leases import HEADROOM_FACTOR

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

#: Adds to a lease (leases.py) while the bucket's headroom is at least HEADROOM_FACTOR times it.
#: KEYS: spend, holds. ARGV: now, lease id, lapses at, units, limit, expire at. Returns the units granted.
LEASE = _PURGE + """
local spend, holds, id, want = KEYS[1], KEYS[2], ARGV[2], tonumber(ARGV[4])
purge(spend, holds, ARGV[1])
local spent = tonumber(redis.call('HGET', spend, 'spent') or '0')
local reserved = tonumber(redis.call('HGET', spend, 'reserved') or '0')
if tonumber(ARGV[5]) - spent - reserved < want * HEADROOM_FACTOR then return 0 end
redis.call('HINCRBY', spend, 'reserved', want)
redis.call('HINCRBY', spend, 'spent', '0')
redis.call('HINCRBY', spend, 'h:' .. id, want)
redis.call('ZADD', holds, ARGV[3], id)
expire(spend, holds, ARGV[6])
return want
""".replace("HEADROOM_FACTOR", str(HEADROOM_FACTOR))

#: Settles one or more calls' holds. KEYS: per bucket of each call, spend and holds, in order.
#: ARGV: per call: hold id, its number of buckets; then per bucket: actual cost, limit, expire at.
#: Returns per bucket, in order: spent after, and 1 when this settle took it past its limit first.
SETTLE = _PURGE + """
local out, k, a = {}, 1, 1
while a <= #ARGV do
  local id, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    local spend, holds = KEYS[k], KEYS[k + 1]
    if redis.call('ZREM', holds, id) == 1 then
      local amount = redis.call('HGET', spend, 'h:' .. id)
      if amount and amount ~= '0' then redis.call('HINCRBY', spend, 'reserved', '-' .. amount) end
      redis.call('HDEL', spend, 'h:' .. id)
    end
    local spent = redis.call('HINCRBY', spend, 'spent', ARGV[a])
    local crossed = 0
    if spent > tonumber(ARGV[a + 1]) and redis.call('HSETNX', spend, 'alerted', '1') == 1 then crossed = 1 end
    expire(spend, holds, ARGV[a + 2])
    table.insert(out, spent)
    table.insert(out, crossed)
    k, a = k + 2, a + 3
  end
end
return out
"""

#: Moves a lease's settled spending to `spent`. KEYS: spend, holds. ARGV: lease id, units spent,
#: give the rest back (1/0), limit, expire at, lapses at.
#: Returns {spent after, 1 if this took the bucket past its limit first, units the lease still holds}.
FLUSH = _PURGE + """
local spend, holds, id = KEYS[1], KEYS[2], ARGV[1]
local held = tonumber(redis.call('HGET', spend, 'h:' .. id) or '0')
local drop = tonumber(ARGV[2])
if ARGV[3] == '1' or drop > held then drop = held end
if drop > 0 then redis.call('HINCRBY', spend, 'reserved', -drop) end
local left = held - drop
if left > 0 then
  redis.call('HSET', spend, 'h:' .. id, left)
  redis.call('ZADD', holds, ARGV[6], id)
else
  redis.call('HDEL', spend, 'h:' .. id)
  redis.call('ZREM', holds, id)
end
local spent = redis.call('HINCRBY', spend, 'spent', ARGV[2])
local crossed = 0
if spent > tonumber(ARGV[4]) and redis.call('HSETNX', spend, 'alerted', '1') == 1 then crossed = 1 end
expire(spend, holds, ARGV[5])
return {spent, crossed, left}
"""

#: KEYS: holds_1, holds_2, … ARGV: hold id, lapses at. Moves the lapse time of a live hold.
RENEW = """
for i = 1, #KEYS do redis.call('ZADD', KEYS[i], 'XX', ARGV[2], ARGV[1]) end
return 0
"""

#: Each script's SHA1, for EVALSHA.
SHAS = {script: hashlib.sha1(script.encode()).hexdigest() for script in (RESERVE, LEASE, SETTLE, FLUSH, RENEW)}
