"""ConcurrencyLimitStage: the upstream never sees more than `max_concurrency` calls at once."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

from upstreams import Fault

from keel.settings import Settings

from .conftest import Routed, Upstreams, configure, run, run_async


def limited(project: Path, ups: Upstreams, limit: int) -> Settings:
    return configure(project, ups, up_options={"max_concurrency": limit})


def test_calls_over_the_limit_wait_for_a_slot(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.SLOW, times=6, delay=0.2)

    async def scenario(routed: Routed) -> None:
        outcomes = await asyncio.gather(*(routed.complete() for _ in range(6)))
        assert all(o.error is None for o in outcomes)

    run(limited(project, ups, 2), scenario)
    assert ups.up.count == 6 and ups.up.peak == 2


def test_without_a_limit_calls_run_together(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.SLOW, times=4, delay=0.2)
    run(configure(project, ups), lambda routed: asyncio.gather(*(routed.complete() for _ in range(4))))
    assert ups.up.peak == 4


def test_a_stream_holds_its_slot_until_it_ends(project: Path, ups: Upstreams) -> None:
    async def scenario(routed: Routed) -> None:
        call = routed.client.prepare("hi", model="primary", stream=True)
        async with aclosing(routed.stage.stream(call)) as chunks:
            await anext(chunks)
            second = asyncio.create_task(routed.complete())
            await asyncio.sleep(0.2)
            assert ups.up.count == 1 and not second.done()
            async for _ in chunks:
                pass
        assert (await second).error is None and ups.up.count == 2

    run(limited(project, ups, 1), scenario)


def test_a_stream_closed_early_gives_its_slot_back(project: Path, ups: Upstreams) -> None:
    ups.up.reply = "one two three four five six seven"

    async def scenario(routed: Routed) -> None:
        call = routed.client.prepare("hi", model="primary", stream=True)
        async with aclosing(routed.stage.stream(call)) as chunks:
            await anext(chunks)
        outcome = await asyncio.wait_for(routed.complete(), timeout=5)
        assert outcome.error is None and ups.up.count == 2

    run(limited(project, ups, 1), scenario)


def test_the_limit_works_in_each_event_loop(project: Path, ups: Upstreams) -> None:
    ups.up.script(Fault.SLOW, times=6, delay=0.1)
    routed = Routed(limited(project, ups, 1))

    async def three_at_once(routed: Routed) -> None:
        outcomes = await asyncio.gather(*(routed.complete() for _ in range(3)))
        assert all(o.error is None for o in outcomes)

    for _ in range(2):
        asyncio.run(run_async(routed, three_at_once))
    assert ups.up.count == 6 and ups.up.peak == 1
