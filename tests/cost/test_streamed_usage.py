"""Streams: usage from the upstream when it sends it, else counted with the model's tokenizer."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from upstreams import OpenAIUpstream
from upstreams._server import Answer

import keel
from keel.store import open_store
from keel.tokenizers import count_openai_messages, count_openai_text


class UsagelessUpstream(OpenAIUpstream):
    """An OpenAI-compatible server that ignores stream_options.include_usage."""

    def stream_frames(self, body: dict[str, Any], answer: Answer) -> list[bytes]:
        body = {**body, "stream_options": {}}
        return super().stream_frames(body, answer)


CONFIG = '[providers.up]\ntype = "openai"\nbase_url = "{url}"\npricing_id = "openai"\n[models.mini]\nprovider = "up"\nmodel = "gpt-4o-mini"\n'


@pytest.mark.parametrize("upstream_class", [OpenAIUpstream, UsagelessUpstream])
def test_streamed_usage_is_reported_or_estimated(project: Path, upstream_class: type[OpenAIUpstream]) -> None:
    with upstream_class() as up:
        (project / "keel.toml").write_text(CONFIG.format(url=up.base_url))
        with keel.Client() as client:
            text = "".join(c.text for c in client.stream("count these four words", model="mini"))
            assert client.flush()
            store = open_store(client.settings.effective_store_url)
            [record] = store.list_traces()
            store.close()
    assert text == "Echo: count these four words"
    messages = [{"role": "user", "content": "count these four words"}]
    if upstream_class is OpenAIUpstream:
        assert (record["prompt_tokens"], record["completion_tokens"], record["usage_estimated"]) == (4, 5, False)
    else:
        prompt, completion = count_openai_messages(messages, "gpt-4o-mini"), count_openai_text(text, "gpt-4o-mini")
        assert (record["prompt_tokens"], record["completion_tokens"], record["usage_estimated"]) == (prompt, completion, True)
        assert Decimal(record["cost"]) == Decimal(prompt) * Decimal("0.15") / 10**6 + Decimal(completion) * Decimal("0.6") / 10**6
