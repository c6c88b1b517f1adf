"""The pytest plugin, driving a small user test suite with pytester: record, replay offline, fail loudly."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
from upstreams import OpenAIUpstream

from .conftest import CONFIG, KEY_VAR, SECRET

pytest_plugins = ["pytester"]

PLUGIN = "keel.replay.pytest_plugin"

#: The user's suite: settings from keel.toml and the environment the fixture sets, the pipeline
#: composed by hand (ReplayStage over ProviderStage) as the client will once it is wired.
USER_TESTS = '''
import asyncio

from keel.client import AsyncClient
from keel.pipeline import ProviderStage
from keel.replay import ReplayStage
from keel.settings import load_settings


def answer(text):
    settings = load_settings()

    async def main():
        client = AsyncClient(settings, record=False)
        stage = ReplayStage(ProviderStage(), settings.replay.mode, settings.replay.dir)
        try:
            return (await stage.complete(client.prepare(text, model="primary", temperature=0))).content
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_greeting(keel_replay):
    assert answer("{greeting}") == "Echo: {greeting}"


def test_farewell(keel_replay):
    assert keel_replay.directory.name == "test_app"
    assert answer("goodbye") == "Echo: goodbye"
'''


def plugin_args() -> list[str]:
    """`-p keel.replay.pytest_plugin`, unless the installed package registers it (pytest11)."""
    registered = any(ep.value == PLUGIN for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if registered else ["-p", PLUGIN]


@pytest.fixture
def user_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> OpenAIUpstream:
    monkeypatch.setenv(KEY_VAR, SECRET)
    monkeypatch.delenv("KEEL_REPLAY", raising=False)
    monkeypatch.delenv("KEEL_REPLAY_DIR", raising=False)
    up = OpenAIUpstream()
    up.start()
    pytester.makefile(".toml", keel=CONFIG.format(base_url=up.base_url, key_var=KEY_VAR))
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_app=USER_TESTS.replace("{greeting}", "hello"))
    yield up
    up.stop()


def test_record_then_replay_offline_then_an_unrecorded_request_fails(
    pytester: pytest.Pytester, user_suite: OpenAIUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = user_suite
    pytester.runpytest(*plugin_args(), "--keel-replay=record").assert_outcomes(passed=2)
    assert up.count == 2
    recordings = pytester.path / "llm_recordings" / "test_app"
    written = sorted(recordings.glob("*.json"))
    assert len(written) == 2 and all(path.name.startswith("up-gpt-4o-mini-") for path in written)
    assert all(SECRET not in path.read_text(encoding="utf-8") for path in written)
    assert {json.loads(p.read_text())["response"]["message"]["content"] for p in written} == {
        "Echo: hello", "Echo: goodbye"}

    up.stop()  # no network from here on: replay must not need it
    pytester.runpytest(*plugin_args(), "--keel-replay=replay").assert_outcomes(passed=2)
    monkeypatch.setenv("KEEL_REPLAY", "replay")  # the environment variable works as the option does
    pytester.runpytest(*plugin_args()).assert_outcomes(passed=2)
    assert up.count == 2

    pytester.makepyfile(test_app=USER_TESTS.replace("{greeting}", "a question never recorded"))
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*ReplayMissing: No recording of this request to up/gpt-4o-mini (first user message: "
        "'a question never recorded'): expected *llm_recordings/test_app/up-gpt-4o-mini-*.json.*",
    ])
    result.stdout.fnmatch_lines(["*KEEL_REPLAY=record (pytest: --keel-replay=record)*"])


def test_replay_is_the_default_mode(pytester: pytest.Pytester, user_suite: OpenAIUpstream) -> None:
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*ReplayMissing*"])
    assert user_suite.count == 0 and not (pytester.path / "llm_recordings").exists()


def test_the_fixture_gives_settings_overrides(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_overrides='''
        from keel.settings import load_settings

        def test_overrides(keel_replay):
            settings = load_settings(env={}, **keel_replay.settings_overrides)
            assert settings.replay.mode == keel_replay.mode == "off"
            assert settings.replay.dir == keel_replay.directory
            assert keel_replay.directory.parts[-2:] == ("llm_recordings", "test_overrides")
    ''')
    pytester.runpytest(*plugin_args(), "--keel-replay=off").assert_outcomes(passed=1)
