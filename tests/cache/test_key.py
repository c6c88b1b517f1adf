"""The canonical request and its key: what counts as the same request."""

from __future__ import annotations

from typing import Any

from keel.cache import canonical_request, digest, is_deterministic
from keel.prompts.runtime import PromptRef
from keel.types import ChatRequest


def key(*, provider: str = "up", upstream: str = "m", prompt: Any = None, fingerprint: str | None = None,
        **body: Any) -> str:
    request = ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **body})
    return digest(canonical_request(request, provider, upstream, prompt=prompt, fingerprint=fingerprint))


def test_delivery_options_and_the_alias_do_not_change_the_key() -> None:
    base = key(temperature=0)
    assert len(base) == 64
    assert key(temperature=0, stream=True, stream_options={"include_usage": True}) == base
    assert key(temperature=0, user="u-1") == base
    assert key(temperature=0, model="an-alias") == base  # the alias: only the upstream model counts


def test_everything_the_provider_is_asked_changes_the_key() -> None:
    base = key(temperature=0)
    variants = [
        key(temperature=0, provider="other"),
        key(temperature=0, upstream="m2"),
        key(temperature=0, fingerprint="fp_1"),
        key(temperature=0, prompt=PromptRef("p", "a" * 64)),
        key(temperature=0.5),
        key(temperature=0, seed=1),
        key(temperature=0, max_tokens=5),
        key(temperature=0, tools=[{"type": "function", "function": {"name": "f"}}]),
        key(temperature=0, response_format={"type": "json_object"}),
        key(temperature=0, logprobs=True),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_a_salt_changes_the_key() -> None:
    request = ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], "temperature": 0})
    keys = [digest(canonical_request(request, "up", "m", salt=salt)) for salt in (None, "repeat:0", "repeat:1", "repeat:0")]
    assert keys[0] == key(temperature=0) and len(set(keys)) == 3 and keys[1] == keys[3]


def test_the_key_ignores_key_order_and_the_prompt_label() -> None:
    assert key(temperature=0, extra={"a": 1, "b": 2}) == key(temperature=0, extra={"b": 2, "a": 1})
    assert key(prompt=PromptRef("p", "a" * 64, label="prod")) == key(prompt=PromptRef("p", "a" * 64))


def test_deterministic_means_temperature_zero_or_a_seed() -> None:
    def request(**body: Any) -> ChatRequest:
        return ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **body})

    assert is_deterministic(request(temperature=0))
    assert is_deterministic(request(temperature=1, seed=3))
    assert not is_deterministic(request(temperature=0.2))
    assert not is_deterministic(request())
