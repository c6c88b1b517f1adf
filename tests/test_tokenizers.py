"""Offline token counting with the models' real tokenizers."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.tokenizers import count_openai_messages, openai_encoding


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_CACHE_DIR", str(tmp_path))
    openai_encoding.cache_clear()


def test_known_token_ids_offline() -> None:
    assert openai_encoding("gpt-4").encode("hello world") == [15339, 1917]  # cl100k_base
    assert openai_encoding("gpt-4o-mini").name == "o200k_base"
    assert openai_encoding("some-future-model").name == "o200k_base"


def test_chat_message_count_follows_openai_format() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}]
    # 3 priming + per message 3 + role + content tokens
    encoding = openai_encoding("gpt-4o")
    expected = 3 + sum(3 + len(encoding.encode(m["role"])) + len(encoding.encode(m["content"])) for m in messages)
    assert count_openai_messages(messages, "gpt-4o") == expected == 16
