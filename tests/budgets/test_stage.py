"""BudgetStage over the routing stages and the fake provider: worst cases, settles, scopes, refusals.

The fake provider's usage counts words: prompt = words of every message, completion = words of the
answer ("Echo: <last user message>"). Prices are set per million tokens in keel.toml, so every
figure below is exact. For the fake (not an OpenAI model) the prompt bound is the UTF-8 bytes of
the messages' strings + MESSAGE_TOKENS (8) per message + REQUEST_TOKENS (64).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from keel.budgets import BudgetStage, Ledger, MemoryLedger, RedisLedger, budget_status, open_ledger, with_budgets
from keel.budgets.worst_case import MESSAGE_TOKENS, REQUEST_TOKENS
from keel.client import AsyncClient
from keel.errors import BudgetExceeded, ConfigError, ProviderTimeout, ServerError, StoreError
from keel.pipeline import Call, ProviderStage, Stage
from keel.routing import build_routing
from keel.settings import Settings, load_settings

from .conftest import REDIS_URL

D = Decimal
T = TypeVar("T")

# Input 1/Mtok, output 2/Mtok; "pricey" costs ten times more.
CONFIG = """
[routing]
retries = 0

[models.m]
provider = "fake"
model = "echo"
fallbacks = {fallbacks}
[models.m.price]
input_per_mtok = "1"
output_per_mtok = "2"

[models.pricey]
provider = "fake"
model = "echo-pricey"
[models.pricey.price]
input_per_mtok = "10"
output_per_mtok = "20"

[providers.selfhosted]
type = "openai"
base_url = "http://127.0.0.1:9/v1"

[models.mystery]
provider = "selfhosted"
model = "llama"

{budgets}
"""

#: "one two three": prompt bound 4 + 13 + 8 + 64 = 89 tokens; real usage 3 prompt, 4 completion.
BOUND = 4 + 13 + MESSAGE_TOKENS + REQUEST_TOKENS
assert BOUND == 89, "the figures below are worked out for a bound of 89 tokens"
WORST = BOUND * D("0.000001") + 10 * D("0.000002")  # with max_tokens = 10: 0.000109
REAL = 3 * D("0.000001") + 4 * D("0.000002")  # 0.000011


def settings_for(project: Path, budgets: str, fallbacks: str = "[]") -> Settings:
    (project / "keel.toml").write_text(CONFIG.format(budgets=budgets, fallbacks=fallbacks), encoding="utf-8")
    return load_settings()


class Harness:
    """The budget stage over routing and the provider, as the client wires them."""

    def __init__(self, settings: Settings, ledger: Ledger | None = None) -> None:
        self.client = AsyncClient(settings, record=False)
        self.ledger = ledger or MemoryLedger()
        stage = with_budgets(build_routing(ProviderStage(), settings, self.client.resolve), settings, self.client.prices, self.ledger)
        assert isinstance(stage, BudgetStage)
        self.stage: BudgetStage = stage

    def call(self, text: str = "one two three", model: str = "m", max_tokens: int | None = 10, **tags: Any) -> Call:
        return self.client.prepare(text, model=model, max_tokens=max_tokens, tags=tags)

    async def complete(self, text: str = "one two three", **options: Any) -> Call:
        call = self.call(text, **options)
        await self.stage.complete(call)
        return call

    async def status(self) -> dict[str, tuple[Decimal, Decimal]]:
        rows = await budget_status(self.client.settings, self.ledger)
        return {f"{r['budget']}:{r['scope']}": (r["spent"], r["reserved"]) for r in rows}

    @property
    def fake(self) -> Any:
        return self.client.provider("fake")

    async def aclose(self) -> None:
        await self.stage.aclose()
        await self.client.aclose()


def run(settings: Settings, scenario: Callable[[Harness], Awaitable[T]], ledger: Ledger | None = None) -> T:
    async def go() -> T:
        harness = Harness(settings, ledger)
        try:
            return await scenario(harness)
        finally:
            await harness.aclose()

    return asyncio.run(go())


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def test_hard_budget_reserves_the_worst_case_and_settles_the_real_cost(project: Path) -> None:
    settings = settings_for(project, '[[budgets]]\nname = "b"\nlimit = "0.0002"\nperiod = "day"\n')

    async def scenario(h: Harness) -> tuple[list[Call], BudgetExceeded, dict[str, Any]]:
        calls = []
        with pytest.raises(BudgetExceeded) as refused:
            while True:
                calls.append(await h.complete())
        return calls, refused.value, await h.status()

    calls, refused, status = run(settings, scenario)
    assert calls[0].notes["budgets"] == {"b": "0.000109"}
    # Admitted while spent + 0.000109 ≤ 0.0002: after 0, 11, …, 88 millionths; not after 99.
    assert len(calls) == 9
    assert status == {"b:global": (9 * REAL, D(0))}
    assert (refused.budget, refused.scope, refused.period) == ("b", "global", today())
    assert (refused.limit, refused.spent, refused.reserved, refused.cost) == (D("0.0002"), D("0.000099"), D(0), WORST)
    assert refused.message == (
        f"Budget 'b' (global, {today()}) cannot take this call: limit 0.0002, spent 0.000099, and this call may "
        "cost up to 0.000109. Lower max_tokens to lower the worst case, or raise the budget's limit in keel.toml."
    )
    assert refused.status_code == 429 and refused.error_type == "budget_exceeded"


def test_concurrent_calls_in_one_process_hold_the_limit(project: Path) -> None:
    settings = settings_for(project, f'[[budgets]]\nname = "b"\nlimit = "{5 * WORST}"\n')

    class Slow(Stage):
        async def complete(self, call: Call) -> Any:
            await asyncio.sleep(0.05)
            return await self.inner.complete(call)

    async def scenario(h: Harness) -> tuple[int, dict[str, Any]]:
        h.stage.inner = Slow(h.stage.inner)
        outcomes = await asyncio.gather(*(h.complete() for _ in range(50)), return_exceptions=True)
        assert all(isinstance(o, (Call, BudgetExceeded)) for o in outcomes)
        return sum(isinstance(o, Call) for o in outcomes), await h.status()

    answered, status = run(settings, scenario)
    assert answered == 5  # all 50 reserved before any settled: 5 worst cases fit
    assert status == {"b:global": (5 * REAL, D(0))}


def test_streams_settle_their_usage_or_keep_the_worst_case_when_cut_short(project: Path) -> None:
    settings = settings_for(project, '[[budgets]]\nname = "b"\nlimit = "1"\n')

    async def scenario(h: Harness) -> list[dict[str, Any]]:
        seen = []
        chunks = [chunk async for chunk in h.stage.stream(h.call())]
        assert chunks[-1].usage is not None
        seen.append(await h.status())
        stream = h.stage.stream(h.call())
        await anext(stream)
        await stream.aclose()  # the caller went away: the real usage is unknown
        seen.append(await h.status())
        return seen

    full, cut = run(settings, scenario)
    assert full == {"b:global": (REAL, D(0))}
    assert cut == {"b:global": (REAL + WORST, D(0))}


def test_failed_calls_cost_nothing_unless_the_upstream_may_have_billed(project: Path) -> None:
    settings = settings_for(project, '[[budgets]]\nname = "b"\nlimit = "1"\n')

    async def scenario(h: Harness) -> list[dict[str, Any]]:
        seen = []
        h.fake.queue(ServerError("upstream 500", provider="fake", status=500))
        with pytest.raises(ServerError):
            await h.complete()
        seen.append(await h.status())
        h.fake.queue(ProviderTimeout("no answer in time", provider="fake"))
        with pytest.raises(ProviderTimeout):
            await h.complete()
        seen.append(await h.status())
        h.fake.queue(ServerError("upstream 503", provider="fake", status=503))
        with pytest.raises(ServerError):
            async for _ in h.stage.stream(h.call()):
                pass
        seen.append(await h.status())
        return seen

    answered_error, timed_out, stream_error = run(settings, scenario)
    assert answered_error == {"b:global": (D(0), D(0))}
    assert timed_out == {"b:global": (WORST, D(0))}  # it may have run, and been billed, upstream
    assert stream_error == {"b:global": (WORST, D(0))}


def test_scopes_pick_the_bucket_and_calls_outside_a_scope_do_not_count(project: Path) -> None:
    budgets = "".join(
        f'[[budgets]]\nname = "{name}"\nlimit = "1"\nscope = "{scope}"\n\n'
        for name, scope in [("g", "global"), ("k", "key"), ("t", "tenant"), ("f", "tag:feature"),
                            ("s", "tag:feature=search"), ("p", "prompt:summarize")]
    )
    settings = settings_for(project, budgets)

    async def scenario(h: Harness) -> dict[str, Any]:
        await h.complete(api_key="3fa2", tenant="acme", feature="search")
        await h.complete(tenant="acme", feature="chat")
        await h.complete(tenant="globex")
        call = h.call()
        call.prompt = SimpleNamespace(name="summarize")
        await h.stage.complete(call)
        return await h.status()

    assert run(settings, scenario) == {
        "g:global": (4 * REAL, D(0)),
        "k:key=3fa2": (REAL, D(0)),
        "t:tenant=acme": (2 * REAL, D(0)),
        "t:tenant=globex": (REAL, D(0)),
        "f:feature=chat": (REAL, D(0)),
        "f:feature=search": (REAL, D(0)),
        "s:feature=search": (REAL, D(0)),
        "p:prompt=summarize": (REAL, D(0)),
    }


def test_reservations_worked_out_once_move_to_the_next_period_when_it_starts(project: Path) -> None:
    """Calls alike share one reservation plan (buckets, rates); a plan made a second before
    midnight (UTC) is not used after it: the next call holds on the new day's bucket, and on the
    new month's at a month's end."""
    budgets = '[[budgets]]\nname = "d"\nlimit = "1"\nperiod = "day"\n\n[[budgets]]\nname = "m"\nlimit = "1"\nperiod = "month"\n'
    settings = settings_for(project, budgets)
    last_second = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC).timestamp()

    async def scenario(h: Harness) -> list[list[tuple[str, str, D]]]:
        periods = []
        for at in (last_second, last_second + 0.5, last_second + 1, last_second + 2):
            call = h.call()
            labels = h.stage._labels(call)
            assert labels is not None
            holds = h.stage._plan(call, labels, at).holds(BOUND)
            periods.append([(hold.bucket.budget, hold.bucket.period, hold.amount) for hold in holds])
        return periods

    before, same, after, later = run(settings, scenario)
    assert before == same == [("d", "2026-11-30", WORST), ("m", "2026-11", WORST)]
    assert after == later == [("d", "2026-12-01", WORST), ("m", "2026-12", WORST)]


def test_a_refusing_budget_refuses_the_call_for_every_budget(project: Path) -> None:
    settings = settings_for(project, '[[budgets]]\nname = "roomy"\nlimit = "1"\n\n'
                                     '[[budgets]]\nname = "tenant"\nlimit = "0.0001"\nscope = "tenant"\n')

    async def scenario(h: Harness) -> tuple[BudgetExceeded, dict[str, Any]]:
        with pytest.raises(BudgetExceeded) as refused:
            await h.complete(tenant="acme")
        await h.complete(tenant="other", max_tokens=1)  # 89 + 2 millionths fit
        return refused.value, await h.status()

    refused, status = run(settings, scenario)
    assert (refused.budget, refused.scope) == ("tenant", "tenant=acme")
    assert status == {"roomy:global": (REAL, D(0)), "tenant:tenant=other": (REAL, D(0))}


def test_the_worst_case_covers_the_fallbacks_and_the_settle_prices_who_answered(project: Path) -> None:
    settings = settings_for(project, '[[budgets]]\nname = "b"\nlimit = "1"\n', fallbacks='["pricey"]')

    async def scenario(h: Harness) -> tuple[Call, Call, dict[str, Any]]:
        first = await h.complete()
        h.fake.queue(ServerError("down", provider="fake", status=503))
        second = await h.complete()  # m fails, pricey answers
        return first, second, await h.status()

    first, second, status = run(settings, scenario)
    assert first.notes["budgets"] == {"b": "0.00109"}  # priced as pricey: 89 × 10 + 10 × 20 millionths
    assert second.notes["answered_by"] == "pricey"
    assert status == {"b:global": (REAL + 10 * REAL, D(0))}


def test_a_hard_budget_refuses_a_model_without_a_price_and_says_how_to_set_one(project: Path) -> None:
    settings = settings_for(project, '[[budgets]]\nname = "b"\nlimit = "1"\n')

    async def scenario(h: Harness) -> tuple[BudgetExceeded, BudgetExceeded]:
        with pytest.raises(BudgetExceeded) as alias:
            await h.complete(model="mystery")
        with pytest.raises(BudgetExceeded) as direct:
            await h.complete(model="selfhosted/llama")
        return alias.value, direct.value

    alias, direct = run(settings, scenario)
    assert "cannot be bounded: no price is known" in alias.message
    assert "[models.mystery.price] input_per_mtok = …, output_per_mtok = …" in alias.message
    assert "make the budget soft (hard = false)" in alias.message
    assert '[models.NAME] provider = "selfhosted", model = "llama", and [models.NAME.price]' in direct.message


def test_a_soft_budget_lets_calls_pass_its_limit_and_posts_its_webhook_once(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    with webhook_server() as (url, received):
        settings = settings_for(project, f'[[budgets]]\nname = "soft"\nlimit = "0.00002"\nhard = false\n'
                                         f'scope = "tenant"\nperiod = "month"\nwebhook = "{url}"\n')

        async def scenario(h: Harness) -> None:
            for _ in range(3):
                await h.complete(tenant="acme")
                await h.stage.alerts.drain()

        with caplog.at_level(logging.WARNING, logger="keel.budgets"):
            run(settings, scenario)
    month = datetime.now(UTC).strftime("%Y-%m")
    assert received == [{"budget": "soft", "scope": "tenant=acme", "period": month, "limit": "0.00002", "spent": "0.000022"}]
    assert "Budget 'soft' (tenant=acme, " in caplog.text and "passed its limit: spent 0.000022 of 0.00002" in caplog.text


def test_a_failing_webhook_never_fails_the_call(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(project, '[[budgets]]\nname = "soft"\nlimit = "0.00001"\nhard = false\n'
                                     'webhook = "http://127.0.0.1:9/hook"\n')

    async def scenario(h: Harness) -> Call:
        call = await h.complete()
        await h.stage.alerts.drain()
        return call

    with caplog.at_level(logging.WARNING, logger="keel.budgets"):
        run(settings, scenario)
    assert "Budget webhook http://127.0.0.1:9/hook failed for budget 'soft'" in caplog.text


def test_an_unreachable_ledger_stops_hard_budgets_but_not_soft_ones(project: Path) -> None:
    hard = settings_for(project, '[[budgets]]\nname = "b"\nlimit = "1"\n')

    async def refused(h: Harness) -> StoreError:
        with pytest.raises(StoreError) as error:
            await h.complete()
        return error.value

    error = run(hard, refused, RedisLedger("redis://:secret@127.0.0.1:1/0", timeout=1))
    assert "Hard budgets refuse calls until it answers" in error.message and "secret" not in error.message

    soft = settings_for(project, '[[budgets]]\nname = "b"\nlimit = "1"\nhard = false\n')
    run(soft, lambda h: h.complete(), RedisLedger("redis://127.0.0.1:1/0", timeout=1))


def test_budget_names_and_scopes_are_checked(project: Path) -> None:
    twice = settings_for(project, '[[budgets]]\nname = "b"\nlimit = "1"\n\n[[budgets]]\nname = "b"\nlimit = "2"\n')
    with pytest.raises(ConfigError, match="Budgets 'b' are defined more than once"):
        with_budgets(ProviderStage(), twice, AsyncClient(twice, record=False).prices)
    unknown = settings_for(project, '[[budgets]]\nname = "b"\nlimit = "1"\nscope = "team"\n')
    with pytest.raises(ConfigError, match="Use one of: global, key, tenant, tag:NAME, tag:NAME=VALUE, prompt:NAME"):
        with_budgets(ProviderStage(), unknown, AsyncClient(unknown, record=False).prices)


def test_with_budgets_wraps_only_when_budgets_are_configured(project: Path) -> None:
    inner = Stage(ProviderStage())
    plain = settings_for(project, "")
    assert with_budgets(inner, plain, AsyncClient(plain, record=False).prices) is inner
    budgeted = settings_for(project, '[[budgets]]\nname = "b"\nlimit = "1"\n')
    assert isinstance(open_ledger(budgeted), MemoryLedger)
    shared = open_ledger(budgeted.model_copy(update={"redis_url": REDIS_URL}))
    assert isinstance(shared, RedisLedger) and shared.url == REDIS_URL


def test_the_client_pipeline_enforces_budgets(project: Path) -> None:
    """`AsyncClient._build_pipeline` puts the budget stage right around routing."""
    settings = settings_for(project, '[[budgets]]\nname = "b"\nlimit = "0.000115"\n')  # one worst case, not two

    async def scenario() -> list[type]:
        async with AsyncClient(settings) as client:
            stages, stage = [], client.pipeline
            while not isinstance(stage, ProviderStage):
                stages.append(type(stage))
                stage = stage.inner
            assert BudgetStage in stages, "BudgetStage is not in AsyncClient's pipeline: wire with_budgets into client._build_pipeline"
            await client.complete("one two three", model="m", max_tokens=10)
            with pytest.raises(BudgetExceeded):
                await client.complete("one two three", model="m", max_tokens=10)
            return stages

    names = [stage.__name__ for stage in asyncio.run(scenario())]
    # Inside recording (refusals are traced) and every stage that may call more than once or
    # rewrite the request (structured-output repairs, cache); directly around routing, whose
    # fallbacks the worst case covers.
    budgets = names.index("BudgetStage")
    assert names[0] == "RecordStage" and names[budgets + 1] == "FallbackStage"
    if "StructuredStage" in names:
        assert budgets > names.index("StructuredStage")


@contextmanager
def webhook_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()



def test_budgets_command_reads_the_shared_ledger(project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys
    import uuid

    name = f"cli-{uuid.uuid4().hex[:8]}"
    config = f'redis_url = "redis://127.0.0.1:6379/0"\n[[budgets]]\nname = "{name}"\nlimit = 7\nperiod = "day"\n'
    (project / "keel.toml").write_text(config)
    result = subprocess.run([sys.executable, "-m", "keel", "budgets"], cwd=project, capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert name in result.stdout and "$7.0000" in result.stdout
    (project / "keel.toml").write_text(config.replace('redis_url = "redis://127.0.0.1:6379/0"\n', ""))
    result = subprocess.run([sys.executable, "-m", "keel", "budgets"], cwd=project, capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "COLUMNS": "200"})
    assert result.returncode == 1 and "redis_url" in result.stderr
