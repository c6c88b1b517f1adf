"""POST /v1/chat/completions as raw ASGI: the gateway's hot path.

Raw ASGI instead of Starlette's Request/Response saves ~30–40 µs per request (measured, see
shared/DEPENDENCIES.md). The request goes through exactly the pipeline `keel.Client` uses.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import orjson
from pydantic import ValidationError

from ..client import AsyncClient, describe_validation
from ..errors import GatewayAuthError, KeelError, RequestError, RequestTooLarge
from ..prompts.runtime import parse_prompt_model
from ..types import ChatRequest
from .errors import error_headers, error_json, error_status

log = logging.getLogger("keel.server")

Scope = dict[str, Any]


class ChatEndpoint:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        gateway = client.settings.gateway
        self.keys = [k.encode() for k in gateway.keys]
        self.max_bytes = gateway.max_request_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        trace_id = ""
        try:
            headers = dict(scope["headers"])
            key_id = self._authorize(headers)
            body = await self._read_json(headers, receive)
            call = await self._prepare(body, headers)
            _identify(call, key_id, headers.get(b"x-keel-tenant"))
            trace_id = call.trace_id
            if call.request.stream:
                await self._stream(call, send)
            else:
                response = await self.client.pipeline.complete(call)
                await _send(send, 200, orjson.dumps(response.to_openai()), trace_id)
        except KeelError as exc:
            await _send(send, error_status(exc), error_json(exc), trace_id, error_headers(exc))
        except Exception:
            log.exception("gateway error")
            await _send(send, 500, error_json(KeelError("Internal gateway error; see the gateway log.")), trace_id)

    def _authorize(self, headers: dict[bytes, bytes]) -> str | None:
        """The caller's key id (a hash prefix, never the key) when gateway keys are configured."""
        if not self.keys:
            return None
        given = headers.get(b"authorization", b"").removeprefix(b"Bearer ").strip()
        if not any(hmac.compare_digest(given, key) for key in self.keys):
            raise GatewayAuthError("Missing or invalid API key. Send `Authorization: Bearer <key>` with a gateway key.")
        return hashlib.sha256(given).hexdigest()[:12]

    async def _read_json(self, headers: dict[bytes, bytes], receive: Any) -> dict[str, Any]:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise RequestTooLarge(_too_large(self.max_bytes))
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise RequestTooLarge(_too_large(self.max_bytes))
            chunks.append(chunk)
            more = message.get("more_body", False)
        try:
            body = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"The request body is not valid JSON ({exc}). Send a JSON object.") from None
        if not isinstance(body, dict):
            raise RequestError("The request body must be a JSON object with `model` and `messages`.")
        return body

    async def _prepare(self, body: dict[str, Any], headers: dict[bytes, bytes]) -> Any:
        tags = _tags(headers.get(b"x-keel-tags"))
        prompt = parse_prompt_model(body.get("model") or "")
        if prompt is not None:
            return await self._prepare_prompt(body, prompt, tags)
        try:
            request = ChatRequest.model_validate(body)
        except ValidationError as exc:
            raise RequestError(f"Invalid request: {describe_validation(exc)}") from None
        return self.client.prepare(request, raw_request=body, tags=tags)

    async def _prepare_prompt(self, body: dict[str, Any], prompt: tuple[str, str | None], tags: dict[str, str]) -> Any:
        """`"model": "prompt:NAME@LABEL"` with `"variables": {...}`; extra messages are appended."""
        name, label = prompt
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            raise RequestError("`variables` must be a JSON object of the prompt's input variables.")
        options = {k: v for k, v in body.items() if k not in ("model", "messages", "variables")}
        call = await self.client.prepare_prompt(
            name, label=label, variables=variables, messages=body.get("messages") or [], **options
        )
        call.tags = tags
        return call

    async def _stream(self, call: Any, send: Any) -> None:
        wants_usage = bool(call.request.stream_options and call.request.stream_options.include_usage)
        started = False
        try:
            async for chunk in self.client.pipeline.stream(call):
                if not started:
                    await _start_sse(send, call.trace_id)
                    started = True
                payload = chunk.to_openai()
                if not wants_usage:
                    if not payload.get("choices"):
                        continue
                    payload.pop("usage", None)
                await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(payload) + b"\n\n", "more_body": True})
        except KeelError as exc:
            if not started:
                raise
            await send({"type": "http.response.body", "body": b"data: " + error_json(exc) + b"\n\n", "more_body": True})
        if not started:
            await _start_sse(send, call.trace_id)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _start_sse(send: Any, trace_id: str) -> None:
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-keel-trace-id", trace_id.encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})


async def _send(send: Any, status: int, body: bytes, trace_id: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = list(headers or [(b"content-type", b"application/json")])
    if trace_id:
        headers.append((b"x-keel-trace-id", trace_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _identify(call: Any, key_id: str | None, tenant: bytes | None) -> None:
    """Attribute the call to its gateway key and tenant (for cost reports and budgets)."""
    if key_id:
        call.tags["api_key"] = key_id
    if tenant:
        call.tags["tenant"] = tenant.decode("latin-1").strip()


def _tags(header: bytes | None) -> dict[str, str]:
    """`X-Keel-Tags: feature=search, env=prod` → {"feature": "search", "env": "prod"}."""
    if not header:
        return {}
    pairs = (item.split("=", 1) for item in header.decode("latin-1").split(",") if "=" in item)
    # api_key and tenant come from authentication and X-Keel-Tenant only: budgets rely on them.
    return {k.strip(): v.strip() for k, v in pairs if k.strip() and k.strip() not in ("api_key", "tenant")}


def _too_large(limit: int) -> str:
    return f"The request body is larger than the gateway's limit of {limit} bytes. Send less, or raise gateway.max_request_bytes."
