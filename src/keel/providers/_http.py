"""Shared upstream HTTP machinery of the remote providers, on aiohttp.

- `HTTPClient`: one pooled, keep-alive `aiohttp.ClientSession` per provider instance per event
  loop (created on first use), JSON POSTs and SSE streams, every failure turned into a ProviderError.
- `error_for_status`: upstream HTTP status -> typed error (429 -> RateLimited with retry_after, ...).
- `SSEDecoder`: server-sent events from bytes split anywhere.

Timeouts: a plain request must be answered completely within `settings.timeout`; a stream must
send its headers and then each next piece within it (so long answers are not cut). Redirects are
not followed, so a key never travels to another host. aiohttp is imported inside functions:
`import keel` never loads it. With KEEL_BLOCK_REMOTE=1 (the test suite sets it) only loopback
hosts can be called.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from ..errors import (
    AuthenticationFailed,
    InvalidRequest,
    MissingCredentials,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    UnexpectedResponse,
)
from ..settings import ProviderSettings

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

BODY_LIMIT = 1000  # characters of an upstream body that an error keeps
USER_AGENT = "keel/0.1"

#: Error `type` strings of OpenAI and Anthropic error bodies and events -> Keel errors.
_ERROR_TYPES: dict[str, type[ProviderError]] = {
    "rate_limit_error": RateLimited, "timeout_error": ProviderTimeout,
    "overloaded_error": ServerError, "api_error": ServerError, "server_error": ServerError,
    "invalid_request_error": InvalidRequest, "not_found_error": InvalidRequest,
    "authentication_error": AuthenticationFailed, "permission_error": AuthenticationFailed,
}


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str = "message"


class SSEDecoder:
    """Server-sent events from bytes split anywhere: `data:` lines (joined with newlines for
    multi-line events), `event:` names, `:` comments ignored, LF, CRLF or CR line ends."""

    def __init__(self) -> None:
        self._pending = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        lines = (self._pending + chunk).splitlines(keepends=True)
        self._pending = b""
        # Keep an unfinished last line, and a final CR that may be the first half of a CRLF.
        if lines and (lines[-1].endswith(b"\r") or not lines[-1].endswith(b"\n")):
            self._pending = lines.pop()
        events = (self._line(line.rstrip(b"\r\n").decode("utf-8", "replace")) for line in lines)
        return [event for event in events if event is not None]

    def close(self) -> list[SSEEvent]:
        """End of stream. Lenient: a last event without its closing blank line is still delivered."""
        events = self.feed(b"\n") if self._pending else []
        last = self._dispatch()
        return events + [last] if last else events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        event = SSEEvent("\n".join(self._data), self._event or "message") if self._data else None
        self._data, self._event = [], ""
        return event


def is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_remote_allowed(url: str, provider: str) -> None:
    """With KEEL_BLOCK_REMOTE=1, refuse any host that is not this machine."""
    if os.environ.get("KEEL_BLOCK_REMOTE", "").lower() not in ("1", "true", "yes"):
        return
    host = urlsplit(url).hostname or ""
    if not is_loopback(host):
        raise ProviderConnectionError(
            f"{provider}: refusing to call {host!r}: KEEL_BLOCK_REMOTE=1 allows only loopback hosts "
            "(127.0.0.0/8, ::1, localhost). Point base_url at a local server or unset KEEL_BLOCK_REMOTE.",
            provider=provider,
        )


def api_key(settings: ProviderSettings, provider: str) -> str | None:
    """The API key named by `api_key_env`, read now; None when the provider needs none."""
    if not settings.api_key_env:
        return None
    value = os.environ.get(settings.api_key_env)
    if not value:
        raise MissingCredentials(settings.api_key_env, provider)
    return value


def truncate(body: bytes | str) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text if len(text) <= BODY_LIMIT else text[:BODY_LIMIT] + "…"


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms`, or `Retry-After` as seconds or an HTTP-date.
    `headers` is case-insensitive (aiohttp's) or has lower-case names."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return max(0.0, float(headers[name]) / scale)
        except (KeyError, ValueError):
            pass
    try:
        when = parsedate_to_datetime(headers.get("retry-after"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - time.time())


def error_for_status(provider: str, status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
    """The typed error for a non-2xx upstream answer, with the upstream's own message."""
    text = truncate(body)
    detail = _upstream_message(body) or text or "(empty body)"
    message = f"{provider}: upstream answered HTTP {status}: {detail}"
    data: dict[str, Any] = {"provider": provider, "status": status, "body": text}
    if status == 429:
        return RateLimited(message, retry_after=parse_retry_after(headers), **data)
    if status in (401, 403):
        return AuthenticationFailed(message, **data)
    if status == 408:
        return ProviderTimeout(message, **data)
    if status >= 500:
        return ServerError(message, **data)
    if 400 <= status < 500:
        return InvalidRequest(message, **data)
    return UnexpectedResponse(message, **data)


def error_from_payload(provider: str, payload: dict[str, Any]) -> ProviderError:
    """The typed error for an error reported inside a 200 answer (e.g. an SSE `error` event)."""
    error = payload.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    cls = _ERROR_TYPES.get(kind or "", ProviderError)
    detail = _upstream_message(payload) or "no details"
    return cls(f"{provider}: upstream reported an error mid-stream: {detail}", provider=provider,
               status=200, body=truncate(orjson.dumps(payload)))


def parse_json(provider: str, raw: bytes | str) -> dict[str, Any]:
    """A JSON object from the upstream, or UnexpectedResponse."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UnexpectedResponse(f"{provider}: the upstream answer is not a JSON object: {truncate(raw)!r}",
                                 provider=provider, status=200, body=truncate(raw))
    return value


@contextmanager
def expect_shape(provider: str, payload: Any) -> Iterator[None]:
    """Reading `payload` with [] and .get(): a missing field or wrong type -> UnexpectedResponse."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        body = truncate(orjson.dumps(payload))
        raise UnexpectedResponse(
            f"{provider}: unexpected answer shape ({type(exc).__name__}: {exc}): {body}",
            provider=provider, status=200, body=body,
        ) from exc


def _upstream_message(body: bytes | dict[str, Any]) -> str | None:
    """`error.message` of an OpenAI or Anthropic error body, with its type."""
    try:
        data = orjson.loads(body) if isinstance(body, bytes) else body
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return f"{error['type']}: {error['message']}" if error.get("type") else str(error["message"])
    if isinstance(error, str):
        return error
    return str(data["message"]) if isinstance(data, dict) and data.get("message") else None


class HTTPClient:
    """The upstream connection of one provider instance: pooled sessions, errors, timeouts."""

    def __init__(self, provider: str, settings: ProviderSettings, default_base_url: str) -> None:
        self.provider = provider
        self.settings = settings
        self.base_url = (settings.base_url or default_base_url).rstrip("/")
        self._urls: dict[str, str] = {}
        #: loop -> (session, the async generator that closes it when that loop shuts down)
        self._sessions: dict[asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, AsyncGenerator[None, None]]] = {}

    def url(self, path: str) -> str:
        """`path` appended to the base URL's path; a query in base_url (Azure api-version) is kept.
        Built and checked against KEEL_BLOCK_REMOTE once per path: this runs on every request."""
        url = self._urls.get(path)
        if url is None:
            parts = urlsplit(self.base_url)
            url = parts._replace(path=parts.path.rstrip("/") + path).geturl()
            check_remote_allowed(url, self.provider)
            self._urls[path] = url
        return url

    async def post_json(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        import aiohttp

        url = self.url(path)
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        with self._translate(url):
            session = await self._session()
            async with session.post(url, data=orjson.dumps(body), headers=self._headers(headers),
                                    timeout=timeout, allow_redirects=False) as response:
                raw = await response.read()
        if not 200 <= response.status < 300:
            raise error_for_status(self.provider, response.status, raw, response.headers)
        return parse_json(self.provider, raw)

    async def post_sse(
        self, path: str, body: dict[str, Any], headers: dict[str, str], is_final: Callable[[SSEEvent], bool]
    ) -> AsyncIterator[SSEEvent]:
        """The events of a streamed answer, up to and including the one `is_final` accepts."""
        import aiohttp

        url = self.url(path)
        wait = self.settings.timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=wait, sock_read=wait)
        headers = self._headers({**headers, "Accept": "text/event-stream"})
        with self._translate(url):
            session = await self._session()
            async with session.post(url, data=orjson.dumps(body), headers=headers, timeout=timeout,
                                    allow_redirects=False) as response:
                if not 200 <= response.status < 300:
                    raw = await response.read()
                    raise error_for_status(self.provider, response.status, raw, response.headers)
                decoder = SSEDecoder()
                async for data in response.content.iter_any():
                    for event in decoder.feed(data):
                        yield event
                        if is_final(event):
                            return
                for event in decoder.close():
                    yield event
                    if is_final(event):
                        return
        raise UnexpectedResponse(f"{self.provider}: the stream from {url} ended before its final event "
                                 "(cut mid-way).", provider=self.provider, status=response.status)

    async def aclose(self) -> None:
        """Close the sessions: this loop's directly, another running loop's on that loop."""
        sessions, self._sessions = self._sessions, {}
        current = asyncio.get_running_loop()
        for loop, (session, closer) in sessions.items():
            if loop is current:
                await closer.aclose()
            elif loop.is_running():
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(closer.aclose(), loop))
            elif not session.closed:
                log.warning("%s: an HTTP session outlived its event loop; call aclose() in that loop", self.provider)

    def _headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers, **self.settings.headers}

    async def _session(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        entry = self._sessions.get(loop)
        if entry is not None and not entry[0].closed:
            return entry[0]
        connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=30, ttl_dns_cache=300)
        session = aiohttp.ClientSession(connector=connector)
        closer = _close_at_loop_end(session)
        await anext(closer)
        live = {other: entry for other, entry in self._sessions.items() if not other.is_closed()}
        self._sessions = {**live, loop: (session, closer)}
        return session

    @contextmanager
    def _translate(self, url: str) -> Iterator[None]:
        """aiohttp and timeout failures -> Keel's provider errors."""
        import aiohttp

        try:
            yield
        except TimeoutError as exc:  # includes aiohttp's connect and read timeouts
            raise ProviderTimeout(f"{self.provider}: no answer (or no next stream chunk) from {url} within "
                                  f"{self.settings.timeout:g}s (settings.timeout).", provider=self.provider) from exc
        except aiohttp.ClientPayloadError as exc:
            raise UnexpectedResponse(f"{self.provider}: the answer from {url} was cut mid-way: {exc}",
                                     provider=self.provider, status=200) from exc
        except aiohttp.ClientError as exc:
            raise ProviderConnectionError(f"{self.provider}: cannot reach {url}: {exc}",
                                          provider=self.provider) from exc


async def _close_at_loop_end(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Parked at its `yield`: when the loop shuts down its async generators (asyncio.run does),
    or this generator is dropped, the session is closed on its own loop."""
    try:
        yield
    finally:
        await session.close()
