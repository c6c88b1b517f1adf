"""One recorded exchange per file: what was asked, and the answer or the error that came back.

    <dir>/<provider>-<model slug>-<12 hex of the request key>.json

    {
      "keel_recording": 1,
      "key": "<sha256 of the canonical request (keel.cache.key, without prompt or fingerprint)>",
      "request": {"provider": …, "model": …, "messages": [...], "params": {...}},
      "response": {"message": {...}, "finish_reason": …, "usage": {...}, "model": …, "system_fingerprint": …},
      "stream": ["texts", "of the", "chunks"],        (when it was streamed)
      "error": {"class": "RateLimited", "message": …, "status": 429, "retry_after": 3.0, …}
    }

Pretty-printed JSON: the fields in the order above, the data inside them (messages, parameters)
with sorted keys, and no ids or timestamps, so the same exchange recorded again gives the same
bytes. Files are written whole (to a temporary file, then renamed).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from .. import errors
from ..cache.key import canonical_request, digest, request_body
from ..errors import KeelError, ProviderError, ReplayMissing
from ..types import ChatRequest, ChatResponse, Usage

FORMAT = 1
_KEY_CHARS = 12
_SLUG_CHARS = 60
_ERROR_FIELDS = ("provider", "status", "body", "retry_after")


def request_key(request: ChatRequest, provider: str, model: str) -> str:
    return digest(canonical_request(request, provider, model))


def file_name(provider: str, model: str, key: str) -> str:
    """`<provider>-<model>-<key prefix>.json`, the names reduced to [a-z0-9-]."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{provider}-{model}".lower()).strip("-")[:_SLUG_CHARS].rstrip("-")
    return f"{slug or 'model'}-{key[:_KEY_CHARS]}.json"


def request_fields(request: ChatRequest, provider: str, model: str) -> dict[str, Any]:
    params = request_body(request)
    return {"provider": provider, "model": model, "messages": params.pop("messages"), "params": params}


def response_fields(response: ChatResponse) -> dict[str, Any]:
    return {
        "message": response.message,
        "finish_reason": response.finish_reason,
        "usage": response.usage.model_dump(mode="json"),
        "model": response.model,
        "system_fingerprint": response.system_fingerprint,
    }


def error_fields(error: ProviderError) -> dict[str, Any]:
    fields = {"class": type(error).__name__, "message": str(error)}
    return fields | {name: getattr(error, name) for name in _ERROR_FIELDS if getattr(error, name, None) is not None}


def write(path: Path, record: dict[str, Any]) -> None:
    """Write `record` to `path` whole: readers never see half a file."""
    top = {name: record[name] for name in ("keel_recording", "key", "request", "response", "stream", "error")
           if name in record}
    text = json.dumps({name: _fields_sorted(value) for name, value in top.items()}, indent=2, ensure_ascii=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read(path: Path, key: str) -> dict[str, Any] | None:
    """The record at `path` if it is the one for `key`, else None."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise KeelError(f"cannot read the recording {path}: {exc}. Delete it and record again "
                        "(KEEL_REPLAY=record).", path=str(path)) from exc
    return record if isinstance(record, dict) and record.get("key") == key else None


def response_from(record: dict[str, Any], provider: str) -> ChatResponse | None:
    fields = record.get("response")
    if fields is None:
        return None
    return ChatResponse(
        id="replay-" + record["key"][:_KEY_CHARS], model=fields.get("model") or record["request"]["model"],
        message=fields["message"], finish_reason=fields.get("finish_reason"),
        usage=Usage.model_validate(fields.get("usage") or {}), system_fingerprint=fields.get("system_fingerprint"),
        provider=provider,
    )


def error_from(record: dict[str, Any]) -> ProviderError:
    """The recorded error as the same typed error (a ProviderError subclass)."""
    fields = dict(record.get("error") or {})
    cls = getattr(errors, fields.pop("class", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, ProviderError)):
        cls = ProviderError
    message = fields.pop("message", "recorded provider error")
    return cls(message, **{name: fields[name] for name in _ERROR_FIELDS if name in fields})


def missing(request: ChatRequest, provider: str, model: str, path: Path) -> ReplayMissing:
    first_user = next((m.text() for m in request.messages if m.role == "user"), "")
    shown = first_user if len(first_user) <= 80 else first_user[:79] + "…"
    return ReplayMissing(
        f"No recording of this request to {provider}/{model} (first user message: {shown!r}): expected "
        f"{path}. Record it by running once with KEEL_REPLAY=record (pytest: --keel-replay=record) "
        "against the real provider, then commit the file.",
        provider=provider, model=model, path=str(path), first_user_message=first_user,
    )


def _fields_sorted(section: Any) -> Any:
    """A section (request, response, error) in its own field order, what is inside sorted."""
    if isinstance(section, dict):
        return {name: _sorted(value) for name, value in section.items()}
    return _sorted(section)


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value
