"""keel.Client and AsyncClient: one pipeline, recorded, priced, on the shipped fake provider."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

import keel
from keel.errors import ConfigError, RequestError, ServerError, UnknownModel
from keel.settings import load_settings
from keel.store import open_store

from testenv import PRICED
from testenv import stored_traces as _records


def test_sync_complete_is_recorded_with_exact_cost(project: Path) -> None:
    (project / "keel.toml").write_text(PRICED)
    with keel.Client() as client:
        response = client.complete("three little words", system="be brief", temperature=0.5, tags={"feature": "t"})
        [record] = _records(client)
    assert response.content == "Echo: three little words"
    # 5 prompt words × $2/M + 4 completion words × $10/M
    assert response.cost.amount == Decimal("0.000050")
    assert record["id"] == response.trace_id
    assert Decimal(record["cost"]) == Decimal("0.000050")
    assert record["cost_source"].startswith("keel.toml")
    assert record["model"] == "cheap" and record["upstream_model"] == "echo-1" and record["provider"] == "fake"
    assert record["request"]["temperature"] == 0.5
    assert record["request"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert record["tags"] == {"feature": "t"}
    assert record["latency_ms"] >= 0


def test_stream_is_recorded_with_ttft_and_usage(project: Path) -> None:
    with keel.Client() as client:
        text = "".join(chunk.text for chunk in client.stream("a b c", model="fake/echo"))
        [record] = _records(client)
    assert text == "Echo: a b c"
    assert record["stream"] is True
    assert record["ttft_ms"] is not None and record["completion_tokens"] == 4
    assert record["response"]["message"]["content"] == "Echo: a b c"


def test_failed_call_is_recorded_and_raised_typed(project: Path) -> None:
    (project / "keel.toml").write_text("[routing]\nretries = 0\n")
    with keel.Client() as client:
        client.provider("fake").queue(ServerError("boom", provider="fake", status=500))
        with pytest.raises(ServerError):
            client.complete("x", model="fake/echo")
        [record] = _records(client)
    assert record["status"] == "error" and record["error_class"] == "ServerError" and record["error_message"] == "boom"
    assert record["cost"] is None


def test_unknown_price_is_unknown_not_zero(project: Path) -> None:
    (project / "keel.toml").write_text('[providers.vllm]\ntype = "fake"\npricing_id = "openai"\n')
    with keel.Client() as client:
        response = client.complete("x", model="vllm/no-such-model-anywhere")
        known = client.complete("x", model="vllm/gpt-4o-mini")
    assert response.cost.amount is None and response.cost.source == "unknown"
    assert known.cost.amount is not None and known.cost.source.startswith("genai-prices")


def test_fake_provider_costs_zero_and_fills_the_schema(project: Path) -> None:
    with keel.Client() as client:
        answer = client.complete("x", model="fake/e", json_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    assert answer.content == '{"n":0}'
    assert answer.cost.amount == 0


def test_async_client_concurrent_calls(project: Path) -> None:
    async def main() -> list[str]:
        async with keel.AsyncClient() as client:
            responses = await asyncio.gather(*(client.complete(f"n{i}", model="fake/echo") for i in range(20)))
            assert client.flush()
            assert open_store(client.settings.effective_store_url).count_traces() == 20
            return [r.content for r in responses]

    assert asyncio.run(main()) == [f"Echo: n{i}" for i in range(20)]


def test_bad_input_errors(project: Path) -> None:
    with keel.Client(record=False) as client:
        with pytest.raises(UnknownModel, match="Known models: local"):
            client.complete("x", model="gpt-nope")
        with pytest.raises(RequestError, match="temperature"):
            client.complete("x", model="fake/e", temperature=9)
        with pytest.raises(UnknownModel, match="ghost/model"):
            client.complete("x", model="ghost/model")


def test_alias_to_missing_provider_says_how_to_fix(project: Path) -> None:
    (project / "keel.toml").write_text('[models.m]\nprovider = "ghost"\nmodel = "x"\n')
    with keel.Client(record=False) as client, pytest.raises(ConfigError, match=r"Add \[providers.ghost\]"):
        client.complete("x", model="m")


def test_unknown_provider_type_names_known_types(project: Path) -> None:
    (project / "keel.toml").write_text('[providers.x]\ntype = "mystery"\n')
    with keel.Client(record=False) as client, pytest.raises(ConfigError, match="unknown type 'mystery'.*anthropic, fake, local, openai"):
        client.complete("x", model="x/m")


def test_third_party_provider_registers_through_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "keel_echo_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: keel-echo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[keel]\necho = keel_echo_plugin\n")
    (site / "keel_echo_plugin.py").write_text(
        textwrap.dedent(
            """
            from keel import hookimpl, FakeProvider

            class ShoutProvider(FakeProvider):
                kind = "shout"
                def _answer(self, request, model):
                    return super()._answer(request, model).upper()

            @hookimpl
            def register_providers(register):
                register("shout", ShoutProvider)
            """
        )
    )
    (tmp_path / "keel.toml").write_text('[providers.loud]\ntype = "shout"\n')
    code = "import keel; c = keel.Client(record=False); print(c.complete('hi', model='loud/x').content); c.close()"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin"}, capture_output=True, text=True)
    assert result.stdout.strip() == "ECHO: HI", result.stderr


def test_settings_object_can_be_passed(project: Path) -> None:
    settings = load_settings(env={}, default_model="fake/x")
    with keel.Client(settings, record=False) as client:
        assert client.complete("y").content == "Echo: y"


def test_retried_and_fallen_back_call_is_explained_in_its_trace(project: Path) -> None:
    (project / "keel.toml").write_text(
        "[routing]\nretries = 1\nbackoff_base = 0.01\n"
        '[providers.backup]\ntype = "fake"\n'
        '[models.main]\nprovider = "fake"\nmodel = "m"\nfallbacks = ["backup/b"]\n'
    )
    with keel.Client() as client:
        client.provider("fake").queue(ServerError("down", provider="fake", status=503), ServerError("still down", provider="fake", status=503))
        answer = client.complete("hi", model="main")
        [record] = _records(client)
    assert answer.content == "Echo: hi" and answer.provider == "backup"
    assert record["provider"] == "backup" and record["upstream_model"] == "b"
    notes = record["notes"]
    assert notes["answered_by"] == "backup/b"
    assert [a["error_class"] for a in notes["attempts"]][:2] == ["ServerError", "ServerError"]


def test_output_model_returns_a_validated_object_and_repairs(project: Path) -> None:
    from pydantic import BaseModel

    class Invoice(BaseModel):
        number: str
        total: float

    with keel.Client() as client:
        client.provider("fake").queue("not json at all", '{"number": "INV-7", "total": 12.5}')
        answer = client.complete("Invoice INV-7 totals 12.50", model="fake/x", output=Invoice)
        [record] = _records(client)
    assert answer.parsed == Invoice(number="INV-7", total=12.5)
    attempts = record["notes"]["structured"]["attempts"]
    assert [a["ok"] for a in attempts] == [False, True]
