"""Calling prompts by name, from the library and through the gateway, with labels that move live."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

import keel
from keel.errors import PromptNotFound, PromptRenderError
from keel.server.app import create_app
from keel.settings import load_settings
from keel.store import open_store
from server.conftest import run_gateway

GREET = """\
description: Greet someone
model: fake/echo
params: {{temperature: 0}}
input:
  who: string
messages:
  - role: user
    content: "{greeting} {{{{ who }}}}"
"""


def _write(project: Path, greeting: str) -> None:
    folder = project / "prompts"
    folder.mkdir(exist_ok=True)
    (folder / "greet.prompt.yaml").write_text(GREET.format(greeting=greeting))


def _traces(client: keel.Client) -> list[dict]:
    assert client.flush()
    store = open_store(client.settings.effective_store_url)
    try:
        return store.list_traces(limit=50)
    finally:
        store.close()


def test_library_call_by_name_is_traced_with_version_and_label(project: Path) -> None:
    _write(project, "Hello")
    with keel.Client() as client:
        answer = client.prompt("greet").run(who="Ada")
        version = client.aio.prompts.library.get("greet").version
        client.aio.prompts.store().set_label("greet", "production", version, actor="test")
        labelled = client.prompt("greet", label="production").run(who="Bo")
        [second, first] = _traces(client)
    assert answer.content == "Echo: Hello Ada" and labelled.content == "Echo: Hello Bo"
    assert (first["prompt_name"], first["prompt_version"], first["prompt_label"]) == ("greet", version, None)
    assert (second["prompt_name"], second["prompt_label"]) == ("greet", "production")
    assert second["request"]["temperature"] == 0


def test_label_pins_old_version_until_moved(project: Path) -> None:
    _write(project, "Hello")
    with keel.Client(record=False) as client:
        prompts = client.aio.prompts
        prompts.label_ttl = 0
        old = prompts.library.get("greet")
        prompts.remember(old)
        prompts.store().set_label("greet", "production", old.version, actor="test")
        _write(project, "Goodbye")
        assert client.prompt("greet", label="production").run(who="A").content == "Echo: Hello A"
        assert client.prompt("greet").run(who="A").content == "Echo: Goodbye A"
        new = prompts.library.get("greet")
        prompts.store().set_label("greet", "production", new.version, actor="test", reason="ship it")
        assert client.prompt("greet", label="production").run(who="A").content == "Echo: Goodbye A"


def test_prompt_errors_are_precise(project: Path) -> None:
    _write(project, "Hello")
    with keel.Client(record=False) as client:
        with pytest.raises(PromptNotFound, match="greet"):
            client.prompt("greeet").run(who="x")
        with pytest.raises(PromptRenderError, match="who"):
            client.prompt("greet").run()
        with pytest.raises(PromptRenderError, match="who"):
            client.prompt("greet").run(who=5)
        with pytest.raises(PromptNotFound, match="no label 'staging'"):
            client.prompt("greet", label="staging").run(who="x")


def test_gateway_calls_prompt_by_name_and_sees_label_moves_live(project: Path) -> None:
    _write(project, "Hello")
    with run_gateway(create_app(load_settings())) as gw:
        prompts = gw.client.prompts
        prompts.label_ttl = 0
        first = prompts.library.get("greet")
        prompts.remember(first)
        prompts.store().set_label("greet", "production", first.version, actor="test")
        with openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as client:
            ask = lambda: client.chat.completions.with_raw_response.create(  # noqa: E731
                model="prompt:greet@production", messages=[], extra_body={"variables": {"who": "Cy"}}
            )
            before = ask()
            _write(project, "Howdy")
            second = prompts.library.get("greet")
            prompts.remember(second)
            prompts.store().set_label("greet", "production", second.version, actor="test")
            after = ask()
            with pytest.raises(openai.BadRequestError, match="who"):
                client.chat.completions.create(model="prompt:greet", messages=[], extra_body={"variables": {}})
            with pytest.raises(openai.NotFoundError, match="greet"):
                client.chat.completions.create(model="prompt:gret", messages=[])
        assert before.parse().choices[0].message.content == "Echo: Hello Cy"
        assert after.parse().choices[0].message.content == "Echo: Howdy Cy"
        assert gw.client.flush()
        store = open_store(gw.client.settings.effective_store_url)
        record = store.get_trace(after.headers["x-keel-trace-id"])
        store.close()
    assert (record["prompt_name"], record["prompt_version"], record["prompt_label"]) == ("greet", second.version, "production")


def test_call_answered_by_a_different_model_than_locked_is_flagged_and_counted(project: Path) -> None:
    from keel.prompts.lockfile import LockEntry, Lockfile, ModelIdentity

    _write(project, "Hello")
    with keel.Client() as client:
        spec = client.aio.prompts.library.get("greet")
        lock = Lockfile()
        pinned = ModelIdentity(alias="fake/echo", provider="fake", model="echo", fingerprint="fake-00000000")
        lock.set("greet", LockEntry(version=spec.version, model=pinned, params=spec.params))
        lock.write(project / "keel.lock")
        client.prompt("greet").run(who="A")
        (project / "keel.lock").unlink()
        client.prompt("greet").run(who="B")
        [unlocked, drifted] = _traces(client)
        stats = client.aio.prompts.store().prompt_call_stats("greet")
    assert drifted["model_drift"] is True and unlocked["model_drift"] is None
    assert stats["calls"] == 2 and stats["drift_calls"] == 1
