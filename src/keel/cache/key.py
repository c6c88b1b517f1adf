"""What makes two requests the same: the canonical request and its key.

The canonical request is what the provider is asked, and nothing about how the answer is
delivered: provider name, upstream model id, the messages and every parameter (response_format,
tools and passthrough extras included), but not `stream`, `stream_options` or `user`. So a
streamed and a plain request share their answer, and two aliases of one upstream model share it
too. The cache adds the prompt's name and version, the model's fingerprint and the call's salt
(`Call.cache_salt`: the eval runner's repeat index); replay does not (a recording answers the
request as sent, whatever prompt file rendered it).

The key is the sha256 of the canonical request as JSON with sorted keys.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ..types import ChatRequest

#: Bumped when the canonical form changes, so entries of the old form are no longer found.
KEY_VERSION = 1
#: Request fields that change how the answer is delivered or attributed, not what it is.
NOT_IN_KEY = frozenset({"model", "stream", "stream_options", "user"})


def request_body(request: ChatRequest) -> dict[str, Any]:
    """The messages and parameters that decide the answer, as JSON-ready data."""
    return request.model_dump(mode="json", exclude_none=True, by_alias=True, exclude=set(NOT_IN_KEY))


def canonical_request(
    request: ChatRequest,
    provider: str,
    model: str,
    *,
    prompt: Any = None,
    fingerprint: str | None = None,
    salt: str | None = None,
) -> dict[str, Any]:
    """The request as the provider `provider` is asked it for upstream model `model`; `prompt` is
    a PromptRef (name and version are used), `fingerprint` the model's identity when known, `salt`
    anything else that must keep two identical requests apart."""
    canonical: dict[str, Any] = {"v": KEY_VERSION, "provider": provider, "model": model,
                                 "request": request_body(request)}
    if prompt is not None:
        canonical["prompt"] = {"name": prompt.name, "version": prompt.version}
    if fingerprint:
        canonical["fingerprint"] = fingerprint
    if salt is not None:
        canonical["salt"] = salt
    return canonical


def digest(canonical: dict[str, Any]) -> str:
    """sha256 (64 hex characters) of the canonical JSON of `canonical`: sorted keys, no spaces."""
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


def is_deterministic(request: ChatRequest) -> bool:
    """Whether the request asks for a reproducible answer: temperature 0, or a seed."""
    return request.temperature == 0 or request.seed is not None
