"""Token counts for a call whose upstream reported none (some servers ignore include_usage).

Counted with the model's own tokenizer where Keel has one offline; the figures are marked
estimated. Without a tokenizer the usage stays unknown.
"""

from __future__ import annotations

from typing import Any

from ..types import Usage


async def estimate_usage(provider: Any, model: str, messages: list[dict[str, Any]], text: str) -> Usage | None:
    prompt = await provider.count_prompt_tokens(messages, model)
    completion = await provider.count_text_tokens(text, model)
    if prompt is None or completion is None:
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=completion, estimated=True)
