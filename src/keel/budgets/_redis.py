"""A lean Redis client for the budget ledger: one connection per event loop, RESP2, pipelined.

The ledger talks to Redis twice per call (reserve, settle), on the gateway's request path.
Measured client CPU per call (reserve + settle, two EVALSHAs, uvloop, a local Redis 7, 16 calls
at a time): redis-py 8.1's asyncio client 156-160 µs, the same with hiredis as its parser
132-134 µs, this client 28-39 µs (one call at a time, the gaps are as large: +115-140 µs, +100-115
with hiredis). redis-py's cost is in its pool, locks and per-command machinery more than in
parsing, so hiredis does not close the gap, and ~100 µs is more than the rest of the gateway adds
per request. Here a command is packed into bytes, every
command issued within one turn of the event loop goes out in one write, and replies resolve their
futures in order. (bench/budget_overhead.py --clients repeats the measurement.)

    redis://[[user]:password@]host[:port][/db]
    rediss://…                                  TLS (?ssl_cert_reqs=none to skip verification)
    unix://[[user]:password@]/path/to/socket[?db=N]

Errors: `ReplyError` for an error reply (e.g. NOSCRIPT); OSError, ConnectionError or TimeoutError
when Redis cannot be reached or does not answer within `timeout` (the connection is then dropped
and the next command opens a new one).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigError


class ReplyError(Exception):
    """An error reply from Redis, e.g. "NOSCRIPT No matching script"."""


class _Incomplete(Exception):
    """The buffer ends before the reply does."""


@dataclass(frozen=True)
class Address:
    host: str = "127.0.0.1"
    port: int = 6379
    #: A Unix socket path, instead of host and port.
    path: str | None = None
    tls: bool = False
    verify: bool = True
    username: str | None = None
    password: str | None = None
    db: int = 0

    @classmethod
    def parse(cls, url: str) -> "Address":
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        try:
            if parts.scheme == "unix":
                db = int(query.get("db", ["0"])[0])
                return cls(path=unquote(parts.path), username=user, password=password, db=db)
            if parts.scheme in ("redis", "rediss"):
                db = int(parts.path.strip("/") or query.get("db", ["0"])[0])
                verify = query.get("ssl_cert_reqs", ["required"])[0].lower() != "none"
                return cls(parts.hostname or "127.0.0.1", parts.port or 6379, None, parts.scheme == "rediss", verify, user, password, db)
        except ValueError:
            pass
        raise ConfigError(
            f"Cannot use {parts.scheme}://… as a Redis URL for budgets: use redis://[:password@]host[:port][/db], "
            "rediss://… (TLS) or unix:///path/to/socket[?db=N].",
            scheme=parts.scheme,
        )


class Redis:
    """Commands to one Redis server, on one connection made on first use (and remade after a
    failure). Belongs to the event loop it is first used in."""

    def __init__(self, address: Address, *, timeout: float = 5.0, name: str | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self.name = name
        self._connection: _Connection | None = None
        self._lock: asyncio.Lock | None = None

    async def call(self, *args: Any) -> Any:
        """Send one command and return its reply (bytes, int, None or a list of those)."""
        return await self.send(*args)

    def send(self, *args: Any, head: "Head" = (0, b"")) -> Any:
        """The command (`head`, see `packed`, then `args`) is queued at once when connected: it
        reaches Redis even if the caller then stops waiting. Returns an awaitable of the reply."""
        command = _pack(args, head)
        connection = self._connection
        if connection is not None and connection.open:
            return connection.send(command)
        return self._connect_and_send(command)

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _connect_and_send(self, command: bytes) -> Any:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._connection is None or not self._connection.open:
                self._connection = await self._open()
        return await self._connection.send(command)

    async def _open(self) -> "_Connection":
        loop = asyncio.get_running_loop()
        a = self.address
        context = None
        if a.tls:
            context = ssl.create_default_context()
            if not a.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        factory = lambda: _Connection(loop, self.timeout)  # noqa: E731
        try:
            async with asyncio.timeout(self.timeout):
                if a.path is not None:
                    _, connection = await loop.create_unix_connection(factory, a.path, ssl=context)
                else:
                    _, connection = await loop.create_connection(factory, a.host, a.port, ssl=context)
        except TimeoutError:
            raise TimeoutError(f"no connection within {self.timeout:g} s") from None
        #: (command, what a refusal of it means)
        setup: list[tuple[tuple[Any, ...], str]] = []
        if a.password is not None:
            login = ("AUTH", a.username, a.password) if a.username else ("AUTH", a.password)
            who = f"user {a.username!r} and the password" if a.username else "the password"
            setup.append((login, f"Redis refused {who} given in the URL"))
        if a.db:
            setup.append((("SELECT", a.db), f"Redis refused database {a.db} given in the URL"))
        if self.name:
            setup.append((("CLIENT", "SETNAME", self.name), "Redis refused to name the connection"))
        replies = [(connection.send(_pack(command)), what) for command, what in setup]
        try:
            for reply, what in replies:
                try:
                    await reply  # each times out on its own
                except ReplyError as exc:
                    raise ReplyError(f"{what}: {str(exc).rstrip('.')}") from None
        except BaseException:
            for reply, _ in replies:  # the replies after a failed one fail too: nobody reads them
                reply.add_done_callback(_retrieved)
            connection.close()
            raise
        return connection


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        #: (reply future, its timeout) per command sent, in order.
        self._waiting: deque[tuple[asyncio.Future[Any], asyncio.TimerHandle]] = deque()
        self._outgoing: list[bytes] = []
        self._buffer = bytearray()
        self.open = False

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if not self.open:
            raise ConnectionError("the connection to Redis is closed")
        reply = self._loop.create_future()
        self._waiting.append((reply, self._loop.call_later(self._timeout, self._expire, reply)))
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(command)
        return reply

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        self.open = True

    def data_received(self, data: bytes) -> None:
        buffer, waiting, pos = self._buffer, self._waiting, 0
        buffer += data
        try:
            while waiting:
                value, pos = _parse(buffer, pos)
                reply, timer = waiting.popleft()
                timer.cancel()
                if reply.done():  # its caller stopped waiting
                    continue
                if isinstance(value, ReplyError):
                    reply.set_exception(value)
                else:
                    reply.set_result(value)
        except _Incomplete:
            pass
        except ValueError as exc:  # not RESP: nothing after this can be trusted
            self._fail(ConnectionError(f"unexpected data from Redis: {exc}"))
            return
        del buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"Redis closed the connection ({exc})" if exc else "Redis closed the connection"))

    # -- plumbing -----------------------------------------------------------------------------

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self.open and self._transport is not None:
            self._transport.write(b"".join(outgoing))

    def _expire(self, reply: asyncio.Future[Any]) -> None:
        if not reply.done():
            self._fail(TimeoutError(f"Redis did not answer within {self._timeout:g} s"))

    def _fail(self, error: Exception) -> None:
        self.close()
        while self._waiting:
            reply, timer = self._waiting.popleft()
            timer.cancel()
            if not reply.done():
                reply.set_exception(error)
        self._buffer.clear()


def _retrieved(reply: asyncio.Future[Any]) -> None:
    """Mark a reply's error as seen (else asyncio logs it as never retrieved)."""
    if not reply.cancelled():
        reply.exception()


#: The packed start of a command, reused from call to call: (how many arguments, their bytes).
Head = tuple[int, bytes]


def packed(*args: Any) -> Head:
    """`args` packed once, as the `head` of commands that start with them."""
    return len(args), _pack(args)[len(b"*%d\r\n" % len(args)) :]


def _pack(args: tuple[Any, ...], head: Head = (0, b"")) -> bytes:
    parts = [b"*%d\r\n" % (head[0] + len(args)), head[1]]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _parse(buffer: bytearray, pos: int) -> tuple[Any, int]:
    """The reply starting at `pos` and the position after it; _Incomplete if it is not all there."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line, after = buffer[pos], buffer[pos + 1 : end], end + 2
    if kind == 0x3A:  # ":" integer
        return int(line), after
    if kind == 0x24:  # "$" bulk string
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            raise _Incomplete
        return bytes(buffer[after : after + size]), after + size + 2
    if kind == 0x2A:  # "*" array
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = _parse(buffer, after)
            items.append(item)
        return items, after
    if kind == 0x2B:  # "+" simple string
        return bytes(line), after
    if kind == 0x2D:  # "-" error
        return ReplyError(line.decode(errors="replace")), after
    raise ValueError(f"reply type {chr(kind)!r}")
