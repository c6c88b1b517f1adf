"""Server machinery shared by the fake upstreams: the thread, the fault script, the request record."""

from __future__ import annotations

import asyncio
import enum
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web

from keel.providers.fake import minimal_instance

#: Stream faults strike after this many frames (some of the answer has arrived by then).
CUT_AFTER = 4


class Fault(enum.Enum):
    """Misbehaviour for the next requests; parameters go to `Upstream.script(fault, times, **params)`.

    RATE_LIMIT      429 with `Retry-After: <retry_after>` (seconds or an HTTP-date; default 1)
    ERROR           HTTP `status` (default 500) with the vendor's error body
    HANG            never answers (the client's timeout has to fire)
    SLOW            waits `delay` seconds (default 0.2) before the first byte, then answers
    STALL           a stream sends its first events, then goes silent (a plain request: HANG)
    STREAM_CUT      sends part of the answer, then drops the connection; with `clean=True` a
                    stream ends its HTTP body properly instead, but without the final event
    MALFORMED_JSON  200 whose body (or a stream event) is not JSON
    WRONG_SHAPE     200 whose JSON lacks the expected fields
    ERROR_EVENT     a stream sends its first events, then an error event
    """

    RATE_LIMIT = "rate_limit"
    ERROR = "error"
    HANG = "hang"
    SLOW = "slow"
    STALL = "stall"
    STREAM_CUT = "stream_cut"
    MALFORMED_JSON = "malformed_json"
    WRONG_SHAPE = "wrong_shape"
    ERROR_EVENT = "error_event"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    peer: Any = None
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    text: str = ""
    tool: dict[str, Any] | None = None  # {"name": ..., "input": ...}
    finish: str = "stop"                # stop | stop_sequence | length | tool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


class Upstream:
    """Base: the thread, the script of faults, the record. Subclasses speak a wire format."""

    route = ""
    api_prefix = ""

    def __init__(self, reply: str | None = None) -> None:
        self.reply = reply
        self.tool_input: Any = None
        self.cached_tokens = 0
        self.requests: list[Recorded] = []
        self._script: deque[tuple[Fault, dict[str, Any]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- the API tests use --------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.api_prefix}"

    @property
    def count(self) -> int:
        return len(self.requests)

    def script(self, fault: Fault, times: int = 1, **params: Any) -> None:
        """Misbehave with `fault` on the next `times` requests (after those already scripted)."""
        self._script.extend((fault, params) for _ in range(times))

    def reset(self) -> None:
        self._script.clear()
        self.requests.clear()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=type(self).__name__, daemon=True)
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError(f"{type(self).__name__} did not start")

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = None

    # -- the server thread ----------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        assert self._loop is not None
        self._loop.run_until_complete(self._serve())
        ready.set()
        self._loop.run_forever()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post(self.route, self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        assert self._stopping is not None and self._runner is not None
        self._stopping.set()
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(Recorded(request.method, request.path, headers, body, peer, dict(request.query)))
        fault, params = self._script.popleft() if self._script else (None, {})
        if not isinstance(body, dict):
            return self._error(400, "the body is not a JSON object")
        if fault is Fault.SLOW:
            await asyncio.sleep(params.get("delay", 0.2))
        elif fault is not None and (early := await self._early_fault(request, fault, params, body)) is not None:
            return early
        answer = self.answer(body)
        if body.get("stream"):
            return await self._stream(request, body, answer, fault, params)
        return web.json_response(self.completion(body, answer), dumps=_dumps)

    async def _early_fault(self, request: web.Request, fault: Fault, params: dict[str, Any],
                           body: dict[str, Any]) -> web.StreamResponse | None:
        """The response for a fault that replaces the whole answer; None for stream-only faults."""
        streaming = bool(body.get("stream"))
        if fault is Fault.RATE_LIMIT:
            response = self._error(429, "rate limit reached")
            response.headers["Retry-After"] = str(params.get("retry_after", 1))
            return response
        if fault is Fault.ERROR:
            return self._error(params.get("status", 500), "scripted upstream failure")
        if fault is Fault.HANG or (fault is Fault.STALL and not streaming):
            await self._hang()
            return web.Response(status=503)
        if streaming:
            return None
        if fault is Fault.MALFORMED_JSON:
            return web.Response(body=b'{"id": "broken", "choices": [', content_type="application/json")
        if fault is Fault.WRONG_SHAPE:
            return web.json_response({"unexpected": True})
        if fault is Fault.STREAM_CUT:
            response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "1000"})
            await response.prepare(request)
            await response.write(b'{"id": "cut", ')
            return await self._cut(request, response, clean=False)
        return None

    async def _stream(self, request: web.Request, body: dict[str, Any], answer: Answer,
                      fault: Fault | None, params: dict[str, Any]) -> web.StreamResponse:
        frames = self.stream_frames(body, answer)
        if fault is Fault.MALFORMED_JSON:
            frames = frames[:CUT_AFTER] + [b"data: {not json\n\n"]
        elif fault is Fault.WRONG_SHAPE:
            frames = frames[:CUT_AFTER] + [self.frame({"unexpected": True})] + frames[-1:]
        elif fault is Fault.ERROR_EVENT:
            frames = frames[:CUT_AFTER] + [self.error_frame("scripted error mid-stream")]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for index, frame in enumerate(frames):
            if index == CUT_AFTER and fault is Fault.STREAM_CUT:
                return await self._cut(request, response, clean=params.get("clean", False))
            if index == CUT_AFTER and fault is Fault.STALL:
                await self._hang()
                return response
            await response.write(frame)
        await response.write_eof()
        return response

    async def _cut(self, request: web.Request, response: web.StreamResponse, clean: bool) -> web.StreamResponse:
        if clean:  # a well-formed end of the HTTP body, but before the stream's final event
            await response.write_eof()
        elif request.transport is not None:
            request.transport.abort()
        return response

    async def _hang(self) -> None:
        assert self._stopping is not None
        await self._stopping.wait()

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response(self.error_body(status, message), status=status)

    # -- the wire format ------------------------------------------------------------------

    def answer(self, body: dict[str, Any]) -> Answer:
        raise NotImplementedError

    def completion(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        raise NotImplementedError

    def stream_frames(self, body: dict[str, Any], answer: Answer) -> list[bytes]:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def error_frame(self, message: str) -> bytes:
        raise NotImplementedError

    @staticmethod
    def frame(payload: Any, event: str | None = None) -> bytes:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        return (f"event: {event}\n".encode() if event else b"") + b"data: " + data + b"\n\n"

    def compose(self, user_text: str, prompt_words: int, stop: Any, limit: int | None) -> Answer:
        """The text answer: cut at the first stop sequence, then at `limit` words."""
        text = self.reply if self.reply is not None else f"Echo: {user_text}"
        finish, meta = "stop", {}
        for sequence in [stop] if isinstance(stop, str) else stop or []:
            if sequence and sequence in text:
                text, finish, meta = text[: text.index(sequence)], "stop_sequence", {"stop_sequence": sequence}
        words = text.split(" ")
        if limit is not None and len(words) > limit:
            text, finish, meta = " ".join(words[:limit]), "length", {}
        return Answer(text, None, finish, prompt_words, len(text.split()), meta)

    def tool_answer(self, name: str, schema: dict[str, Any], prompt_words: int) -> Answer:
        tool_input = self.tool_input if self.tool_input is not None else minimal_instance(schema)
        return Answer(tool={"name": name, "input": tool_input}, finish="tool",
                      prompt_tokens=prompt_words, completion_tokens=len(orjson.dumps(tool_input).split()))


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def words_of(text: str) -> list[str]:
    """`text` as stream pieces: words with their following space."""
    words = text.split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text")

