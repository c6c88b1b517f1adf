"""Pure data shared by every layer: OpenAI-shaped chat requests, responses, stream chunks, usage.

No I/O here. Fields Keel does not interpret (`tools`, `n`, `logprobs`, vendor extras, …) are kept
in `model_extra` and passed through untouched to OpenAI-compatible upstreams.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message content as plain text (text parts joined)."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = "output"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaFormat | None = None

    @classmethod
    def from_schema(cls, schema: dict[str, Any], name: str = "output") -> "ResponseFormat":
        return cls(type="json_schema", json_schema=JsonSchemaFormat(name=name, schema=schema))


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """A chat completion request in the OpenAI shape. `model` is what the caller asked for."""

    model_config = ConfigDict(extra="allow")

    model: str = ""
    messages: list[Message]
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    response_format: ResponseFormat | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema the answer must follow, when one was asked for."""
        fmt = self.response_format
        if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
            return fmt.json_schema.schema_
        return None

    @property
    def passthrough(self) -> dict[str, Any]:
        """Fields Keel does not interpret, to forward as they came."""
        return dict(self.model_extra or {})

    def to_openai(self, model: str) -> dict[str, Any]:
        """The wire body for an OpenAI-compatible upstream, with `model` replaced."""
        body = self.model_dump(exclude_none=True, by_alias=True, exclude={"stream_options"})
        body["model"] = model
        if self.stream_options is not None:
            body["stream_options"] = self.stream_options.model_dump(exclude_none=True)
        return body


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    #: True when the figures were counted locally because the upstream reported none.
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


class Cost(BaseModel):
    """What a call cost. `amount` None means unknown: never summed as zero."""

    amount: Decimal | None = None
    currency: str = "USD"
    #: Where the price came from: "genai-prices <version>", "keel.toml", "local", or "unknown".
    source: str = "unknown"

    @property
    def known(self) -> bool:
        return self.amount is not None


class ChatResponse(BaseModel):
    """One completed answer. `message` is the assistant message exactly as the upstream sent it."""

    id: str = ""
    model: str = ""
    message: dict[str, Any] = Field(default_factory=lambda: {"role": "assistant", "content": ""})
    finish_reason: str | None = "stop"
    usage: Usage = Field(default_factory=Usage)
    system_fingerprint: str | None = None
    created: int = 0
    #: Filled in by the pipeline.
    provider: str = ""
    trace_id: str = ""
    cost: Cost = Field(default_factory=Cost)
    #: The validated object when structured output was asked for (`output=`).
    parsed: Any = Field(default=None, exclude=True, repr=False)
    #: The upstream's body when it was OpenAI-shaped: returned verbatim by the gateway (n > 1,
    #: logprobs, service_tier and vendor fields survive).
    raw: dict[str, Any] | None = Field(default=None, exclude=True, repr=False)

    @property
    def content(self) -> str:
        value = self.message.get("content")
        return value if isinstance(value, str) else ""

    def to_openai(self) -> dict[str, Any]:
        if self.raw is not None:
            return self.raw
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": [{"index": 0, "message": self.message, "finish_reason": self.finish_reason}],
            "usage": self.usage.to_openai(),
        }


class Chunk(BaseModel):
    """One streamed piece. `delta` is the OpenAI delta dict; usage arrives on the last chunk."""

    id: str = ""
    model: str = ""
    delta: dict[str, Any] = Field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage | None = None
    system_fingerprint: str | None = None
    created: int = 0
    #: The upstream's chunk when it was OpenAI-shaped, forwarded verbatim by the gateway.
    raw: dict[str, Any] | None = Field(default=None, exclude=True, repr=False)

    @property
    def text(self) -> str:
        value = self.delta.get("content")
        return value if isinstance(value, str) else ""

    def to_openai(self) -> dict[str, Any]:
        if self.raw is not None:
            return self.raw
        choices = []
        if self.delta or self.finish_reason:
            choices = [{"index": 0, "delta": self.delta, "finish_reason": self.finish_reason}]
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": choices,
        }
        if self.usage is not None:
            body["usage"] = self.usage.to_openai()
        return body
