"""Token counts for a call whose upstream reported none (some servers ignore include_usage).

Counted with the model's own tokenizer where Keel has one offline; the figures are marked
estimated. Without a tokenizer the usage stays unknown.
"""

from __future__ import annotations

from typing import Any

from ..types import Usage


async def estimate_usage(provider: Any, model: str, messages: list[dict[str, Any]], text: str) -> Usage | None:
    if provider.kind == "openai":
        from ..tokenizers import count_openai_messages, count_openai_text

        return Usage(prompt_tokens=count_openai_messages(messages, model), completion_tokens=count_openai_text(text, model), estimated=True)
    if provider.kind == "local":
        prompt = await provider.count_tokens(await provider.apply_template(messages, model), model)
        return Usage(prompt_tokens=prompt, completion_tokens=await provider.count_tokens(text, model), estimated=True)
    return None
