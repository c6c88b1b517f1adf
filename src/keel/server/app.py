"""The gateway application: the chat hot path as raw ASGI, everything else through Starlette."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..client import AsyncClient
from ..errors import KeelError
from ..settings import Settings, load_settings
from .chat import ChatEndpoint
from .errors import error_body

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


class Gateway:
    """ASGI app: dispatches the chat path directly, the rest to a Starlette app."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.chat = ChatEndpoint(client)
        self.rest = Starlette(routes=_routes(client), lifespan=self._lifespan, exception_handlers={404: _not_found, 405: _not_allowed})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in CHAT_PATHS and scope["method"] == "POST":
            await self.chat(scope, receive, send)
        else:
            await self.rest(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        self.client.recover()
        # Everything loaded so far lives as long as the process: keep it out of the collector,
        # whose full passes over ~100k start-up objects were most of the gateway's p99 (measured).
        gc.collect()
        gc.freeze()
        # A request allocates a few hundred short-lived objects; young collections every 700
        # allocations cost ~10 µs per request (measured), so collect less often.
        gc.set_threshold(50_000, 20, 20)
        yield
        await self.client.aclose()


def create_app(settings: Settings | None = None, client: AsyncClient | None = None) -> Gateway:
    return Gateway(client or AsyncClient(settings or load_settings(), source="gateway"))


def _routes(client: AsyncClient) -> list[Route]:
    async def models(request: Request) -> Response:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": client.settings.models[name].provider} for name in client.known_models()]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return [Route("/v1/models", models), Route("/models", models), Route("/healthz", health)]


async def _not_found(request: Request, exc: Exception) -> Response:
    error = KeelError(f"No route {request.method} {request.url.path}. The gateway serves /v1/chat/completions, /v1/models, /healthz.")
    error.error_type = "not_found"
    return Response(orjson.dumps(error_body(error)), status_code=404, media_type="application/json")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    error = KeelError(f"Method {request.method} is not allowed on {request.url.path}.")
    error.error_type = "invalid_request_error"
    return Response(orjson.dumps(error_body(error)), status_code=405, media_type="application/json")
