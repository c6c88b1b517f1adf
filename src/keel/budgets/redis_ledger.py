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
Lua as doubles, exact for limits below ~9 million currency units (`ledger.MAX_UNITS`). The
scripts are in redis_scripts.py; far from a limit, most calls never reach them (leases.py).

Commands go through `_redis.Redis`, a lean pipelining client (redis-py, even with hiredis, costs
~100 µs more CPU per call than it: see its docstring): one EVALSHA per reserve, which the call
waits for, and one per event-loop turn for the settles of that turn (`settle_later`), which no
call waits for: until it lands, a settled hold still counts as reserved (its worst case), so a
late settle can only refuse early, never overspend.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, unquote
from weakref import WeakKeyDictionary

from ..errors import StoreError
from ._redis import Address, Head, Redis, ReplyError, packed
from .leases import FLUSH_INTERVAL, IDLE_RELEASE, Lease, LeaseBook
from .ledger import Bucket, BucketState, Crossing, Hold, Ledger, Refusal, Then, from_units
from .redis_scripts import FLUSH, LEASE, RENEW, RESERVE, SETTLE, SHAS

log = logging.getLogger("keel.budgets")
#: A settle waiting to be sent: hold id, holds, actual units, what to tell.
Settle = tuple[str, Sequence[Hold], Sequence[int], Then | None]


class RedisLedger(Ledger):
    """Budgets shared through Redis at `url`, under keys starting with `prefix`."""


    def __init__(self, url: str, prefix: str = "keel:budget", *, hold_ttl: float = 900.0, timeout: float = 5.0) -> None:
        self.url = url
        self.address = Address.parse(url)
        self.prefix = prefix
        self.hold_ttl = hold_ttl
        self.timeout = timeout
        # A Redis client belongs to the event loop it was made in: one per loop, made on first use.
        self._clients: WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = WeakKeyDictionary()
        #: (budget, period, scope) → its two keys; (script, keys…) → the packed EVALSHA, script and keys.
        self._keys_of: dict[tuple[str, str, str], list[str]] = {}
        self._heads: dict[tuple[str, ...], Head] = {}
        #: Per event loop, the settles waiting for this turn's script call; the calls on their way.
        self._queues: WeakKeyDictionary[asyncio.AbstractEventLoop, list[Settle]] = WeakKeyDictionary()
        self._settling: set[asyncio.Future[Any]] = set()
        #: Per event loop, this process's leases and the timer of their next flush (leases.py).
        self._books: WeakKeyDictionary[asyncio.AbstractEventLoop, LeaseBook] = WeakKeyDictionary()
        self._flushing: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.TimerHandle] = WeakKeyDictionary()
        self._lease_prefix = f"{os.getpid()}-{os.urandom(4).hex()}-"
        self._then: Then | None = None
        #: The last event loop asked for its book, and that book (kept alive here: one loop at most).
        self._last_loop: asyncio.AbstractEventLoop | None = None
        self._last_book = LeaseBook("")

    def take_now(self, hold_id: str, holds: Sequence[Hold]) -> bool:
        """From this process's leases (leases.py), topping them up in the background when low."""
        book = self._book()
        taken = book.take(hold_id, holds)
        if taken and not book.low:
            return True
        for lease, units in book.to_lease(holds):
            self._lease(book, lease, units)
        return taken

    async def reserve(self, hold_id: str, holds: Sequence[Hold]) -> Refusal | None:
        if self.take_now(hold_id, holds):
            return None
        now = time.time()
        args: list[Any] = [repr(now), hold_id, repr(now + self.hold_ttl)]
        for hold in holds:
            args += [hold.units, hold.bucket.limit_units, int(hold.bucket.hard), _expire_at(hold.bucket)]
        # Once sent, the script runs even if our caller stops waiting: the holds it placed are then
        # released here, not left to lapse (the stage never learns of them, so never settles them).
        reply = await self._run(RESERVE, self._keys(holds), args, on_cancel=lambda done: self._release(done, hold_id, holds))
        if int(reply[0]) == 0:
            return None
        refused = holds[int(reply[0]) - 1]
        return Refusal(refused, from_units(int(reply[1])), from_units(int(reply[2])))

    async def settle(self, hold_id: str, holds: Sequence[Hold], actual: Sequence[int]) -> list[Crossing]:
        if self._book().settle(hold_id, holds, actual):
            return []  # on a lease: its bucket's crossing, if any, is told at the flush
        settle = (hold_id, holds, actual, None)
        return _crossings(holds, await self._run(SETTLE, self._keys(holds), _settle_args([settle])))

    def settle_later(self, hold_id: str, holds: Sequence[Hold], actual: Sequence[int], then: Then) -> None:
        """Queued: the settles of one event-loop turn go to Redis as one script call (a settle on
        leases waits for their next flush)."""
        self._then = then
        if self._book().settle(hold_id, holds, actual):
            return
        queue = self._queues.setdefault(asyncio.get_running_loop(), [])
        queue.append((hold_id, holds, actual, then))
        if len(queue) == 1:
            asyncio.get_running_loop().call_soon(self._send_settles)

    async def idle(self) -> None:
        """Wait for what is on its way to Redis in the background (settles, leases, flushes)."""
        loop = asyncio.get_running_loop()
        if self._queues.get(loop):
            self._send_settles()
        while pending := [task for task in self._settling if task.get_loop() is loop]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def drain(self) -> None:
        """Send the settles queued and the spending on leases, give the leases back, and wait."""
        loop = asyncio.get_running_loop()
        for _ in range(3):  # a lease being flushed or topped up is given back on the next round
            timer = self._flushing.pop(loop, None)
            if timer is not None:
                timer.cancel()
            book = self._books.get(loop)
            if book is None or not book.leases:
                break
            for lease in book.leases.values():
                lease.used_at = -IDLE_RELEASE  # idle: given back as soon as no call holds it
            self._flush_leases(again=False)
            await self.idle()
        await self.idle()

    async def renew(self, hold_id: str, holds: Sequence[Hold]) -> None:
        keys = [self._key("holds", hold.bucket.budget, hold.bucket.period, hold.bucket.scope) for hold in holds]
        await self._run(RENEW, keys, [hold_id, repr(time.time() + self.hold_ttl)])

    async def buckets(self, budget: str, period: str) -> list[BucketState]:
        client = self._client()
        pattern = self._key("spend", budget, period, "") + "*"
        try:
            found, cursor = set(), b"0"
            while True:
                cursor, batch = await client.call("SCAN", cursor, "MATCH", pattern, "COUNT", 500)
                found.update(batch)
                if cursor == b"0":
                    break
            states = []
            for key in sorted(found):
                spent, reserved = await client.call("HMGET", key, "spent", "reserved")
                scope = unquote(key.decode().rsplit(":", 1)[1])
                states.append(BucketState(budget, scope, period, from_units(int(spent or 0)), from_units(int(reserved or 0))))
            return states
        except Exception as exc:
            raise self._unreachable(exc) from exc

    async def aclose(self) -> None:
        await self.drain()
        clients = list(self._clients.items())
        self._clients.clear()
        loop = asyncio.get_running_loop()
        for owner, client in clients:
            if owner is loop:
                await client.aclose()

    # -- plumbing -----------------------------------------------------------------------------

    def _book(self) -> LeaseBook:
        loop = asyncio.get_running_loop()
        if loop is self._last_loop:  # on the request path: skip the weak dictionary's lookup
            return self._last_book
        book = self._books.get(loop)
        if book is None:
            book = self._books[loop] = LeaseBook(self._lease_prefix)
        self._last_loop, self._last_book = loop, book
        return book

    def _background(self, script: str, keys: list[str], args: list[Any], then: Callable[["asyncio.Future[Any]"], None]) -> None:
        """Run `script` without anyone waiting for it (`idle` can), then `then(its future)`."""
        task = asyncio.ensure_future(self._run(script, keys, args))
        self._settling.add(task)

        def done(task: "asyncio.Future[Any]") -> None:
            self._settling.discard(task)
            then(task)

        task.add_done_callback(done)

    def _lease(self, book: LeaseBook, lease: Lease, units: int) -> None:
        """Ask Redis for `units` more on `lease`, in the background."""
        b, now = lease.bucket, time.time()
        args = [repr(now), lease.id, repr(now + self.hold_ttl), units, b.limit_units, _expire_at(b)]
        self._background(LEASE, self._bucket_keys(b), args, lambda done: self._leased(done, book, lease))

    def _leased(self, done: "asyncio.Future[Any]", book: LeaseBook, lease: Lease) -> None:
        failed = done.cancelled() or done.exception() is not None
        if failed and not done.cancelled():
            log.warning("Could not lease budget %r: %s", lease.bucket.budget, done.exception())
        book.leased(lease, None if failed else int(done.result()))
        if not failed and int(done.result()):
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        loop = asyncio.get_running_loop()
        if loop not in self._flushing:
            self._flushing[loop] = loop.call_later(FLUSH_INTERVAL, self._flush_leases)

    def _flush_leases(self, again: bool = True) -> None:
        """Move the spending settled on leases to Redis, renew them, give back those not needed;
        `again` in FLUSH_INTERVAL while there are leases."""
        loop = asyncio.get_running_loop()
        self._flushing.pop(loop, None)
        book = self._books.get(loop)
        if book is None:
            return
        now = time.time()
        for lease, units, release in book.due(self.hold_ttl / 3):
            b = lease.bucket
            args = [lease.id, units, int(release), b.limit_units, _expire_at(b), repr(now + self.hold_ttl)]
            self._background(FLUSH, self._bucket_keys(b), args, lambda done, lease=lease: self._lease_flushed(done, book, lease))
        if book.leases and again:
            self._schedule_flush()

    def _lease_flushed(self, done: "asyncio.Future[Any]", book: LeaseBook, lease: Lease) -> None:
        if done.cancelled() or done.exception() is not None:
            if not done.cancelled():
                log.warning("Could not flush budget lease %s: %s", lease.id, done.exception())
            book.flushed(lease, None)
            return
        spent, crossed, left = (int(value) for value in done.result())
        book.flushed(lease, left)
        if crossed and self._then is not None:
            self._then([Crossing(lease.bucket, from_units(spent))])

    def _send_settles(self) -> None:
        batch = self._queues.pop(asyncio.get_running_loop(), [])
        if not batch:
            return
        keys = [key for _, holds, _, _ in batch for key in self._keys(holds)]
        self._background(SETTLE, keys, _settle_args(batch), lambda done: self._settled(done, batch))

    def _settled(self, done: "asyncio.Future[Any]", batch: list[Settle]) -> None:
        if done.cancelled():
            return
        if done.exception() is not None:  # the holds lapse after hold_ttl; their spending is lost
            log.error("Could not settle budget holds %s: %s", ", ".join(s[0] for s in batch), done.exception())
            return
        reply, start = done.result(), 0
        for _, holds, _, then in batch:
            crossings = _crossings(holds, reply[start:start + 2 * len(holds)])
            start += 2 * len(holds)
            if crossings and then is not None:
                then(crossings)

    def _keys(self, holds: Sequence[Hold]) -> list[str]:
        return [key for hold in holds for key in self._bucket_keys(hold.bucket)]

    def _bucket_keys(self, b: Bucket) -> list[str]:
        """The bucket's spend hash and holds set."""
        pair = self._keys_of.get(b.key)
        if pair is None:
            if len(self._keys_of) >= 4096:  # past periods, scopes with many values
                self._keys_of.clear()
            pair = self._keys_of[b.key] = [self._key(kind, b.budget, b.period, b.scope) for kind in ("spend", "holds")]
        return pair

    def _key(self, kind: str, budget: str, period: str, scope: str) -> str:
        return f"{self.prefix}:{kind}:{quote(budget, safe='')}:{period}:{quote(scope, safe='')}"

    def _client(self) -> Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = Redis(self.address, timeout=self.timeout, name=f"keel-budgets-{os.getpid()}")
        return client

    async def _run(self, script: str, keys: list[str], args: list[Any], on_cancel: Callable[[Any], object] | None = None) -> Any:
        """Run `script`: EVALSHA, or EVAL when Redis does not have it (yet). The command is on its
        way before the first wait, and the wait is shielded: if our caller is cancelled, the reply
        still comes, to `on_cancel(the reply's future)`."""
        client = self._client()
        try:
            head = self._heads.get((script, *keys))
            if head is None:
                if len(self._heads) >= 4096:
                    self._heads.clear()
                head = self._heads[script, *keys] = packed("EVALSHA", SHAS[script], len(keys), *keys)
            sent = _future(client.send(*args, head=head))
            try:
                return await asyncio.shield(sent)
            except ReplyError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
            sent = _future(client.send("EVAL", script, len(keys), *keys, *args))
            return await asyncio.shield(sent)
        except asyncio.CancelledError:
            sent.add_done_callback(on_cancel or _unwaited)
            raise
        except Exception as exc:
            raise self._unreachable(exc) from exc

    def _release(self, reserving: "asyncio.Future[Any]", hold_id: str, holds: Sequence[Hold]) -> None:
        """Drop the holds a reserve placed for a caller that was cancelled meanwhile."""
        if reserving.cancelled() or reserving.exception() is not None or int(reserving.result()[0]) != 0:
            return  # nothing placed (a failed reserve places nothing; a lost reply's holds lapse)

        def released(task: "asyncio.Task[list[Crossing]]") -> None:
            if not task.cancelled() and task.exception() is not None:
                log.warning("Could not release budget holds %s of a cancelled call: %s", hold_id, task.exception())

        asyncio.ensure_future(self.settle(hold_id, holds, [0] * len(holds))).add_done_callback(released)

    def _unreachable(self, exc: Exception) -> StoreError:
        return StoreError(
            f"The budget ledger in Redis ({_redacted(self.url)}) failed: {type(exc).__name__}: {str(exc).rstrip('.')}. "
            "Hard budgets refuse calls until it answers; check that Redis runs and `redis_url` in keel.toml.",
            url=_redacted(self.url),
        )




def _settle_args(batch: list[Settle]) -> list[Any]:
    args: list[Any] = []
    for hold_id, holds, actual, _ in batch:
        args += [hold_id, len(holds)]
        for hold, units in zip(holds, actual, strict=True):
            args += [units, hold.bucket.limit_units, _expire_at(hold.bucket)]
    return args


def _crossings(holds: Sequence[Hold], reply: Sequence[Any]) -> list[Crossing]:
    """The buckets a settle took past their limit first, from its part of the script's reply."""
    return [Crossing(hold.bucket, from_units(int(reply[2 * i]))) for i, hold in enumerate(holds) if int(reply[2 * i + 1]) == 1]


def _unwaited(reply: "asyncio.Future[Any]") -> None:
    """Take a reply nobody waits for any more (else asyncio reports its error as never retrieved)."""
    if not reply.cancelled():
        reply.exception()


def _future(reply: Any) -> "asyncio.Future[Any]":
    """A reply as a future: as it comes when connected; when connecting first, a task."""
    return reply if asyncio.isfuture(reply) else asyncio.ensure_future(reply)


def _expire_at(bucket: Bucket) -> int:
    return 0 if bucket.expires_at is None else int(bucket.expires_at)


def _redacted(url: str) -> str:
    """The URL without its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
