"""KeelError → OpenAI-shaped error body and the right HTTP status."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import KeelError, ProviderError, RateLimited, UnknownModel


def error_body(exc: KeelError) -> dict[str, Any]:
    code: str | None = type(exc).__name__
    param = "model" if isinstance(exc, UnknownModel) else None
    return {"error": {"message": str(exc), "type": exc.error_type, "param": param, "code": code}}


def error_status(exc: KeelError) -> int:
    if isinstance(exc, ProviderError) and exc.status_code == 400 and getattr(exc, "status", None) in (404, 422):
        return 400
    return exc.status_code


def error_headers(exc: KeelError) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json")]
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(exc.retry_after))).encode()))
    return headers


def error_json(exc: KeelError) -> bytes:
    return orjson.dumps(error_body(exc))
