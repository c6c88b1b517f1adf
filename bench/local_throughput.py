"""What LocalProvider costs on top of raw xllamacpp, measured in the same run on the same engine.

    .venv/bin/python bench/local_throughput.py [rounds]

Four ways to generate the same 128 tokens (same prompt, seed, temperature 0, EOS ignored so every
call produces exactly MAX_TOKENS), alternated round by round so load changes hit all of them alike:
raw `handle_chat_completions`, raw with streaming (a no-op callback), LocalProvider.complete and
LocalProvider.stream. Reports median tokens/s and the overhead against the matching raw baseline.

Tokens/s swing widely when other processes compete for the cores, so it also reports Keel's own
cost per call, which contention barely affects: the provider's wall time minus the time spent inside
the engine call it made (timed by wrapping the engine's server), and the CPU time the event-loop
thread used during the call (where streamed chunks are turned into Keel Chunks).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from keel.providers.local import Engine, LocalProvider
from keel.settings import ProviderSettings
from keel.types import ChatRequest, Message

MAX_TOKENS = 128
PROMPT = "Write a short story about a lighthouse keeper."
SAMPLING = {"max_tokens": MAX_TOKENS, "temperature": 0, "seed": 42, "ignore_eos": True}


class TimedServer:
    """Wraps the engine's xllamacpp.Server to record how long each engine call took."""

    def __init__(self, server: Any) -> None:
        self.server, self.last = server, 0.0

    def handle_chat_completions(self, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.server.handle_chat_completions(*args)
        finally:
            self.last = time.perf_counter() - started


def raw_body(stream: bool) -> dict:
    body = {"messages": [{"role": "user", "content": PROMPT}], **SAMPLING}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def raw_complete(engine: Engine) -> int:
    return engine.server.handle_chat_completions(raw_body(stream=False))["usage"]["completion_tokens"]


def raw_stream(engine: Engine) -> int:
    usage: list[int] = []

    def on_chunk(chunk: dict) -> bool:
        if chunk.get("usage"):
            usage.append(chunk["usage"]["completion_tokens"])
        return False

    engine.server.handle_chat_completions(raw_body(stream=True), on_chunk)
    return usage[-1]


async def keel_complete(provider: LocalProvider) -> int:
    request = ChatRequest(messages=[Message(role="user", content=PROMPT)], **SAMPLING)
    return (await provider.complete(request, "default")).usage.completion_tokens


async def keel_stream(provider: LocalProvider) -> int:
    request = ChatRequest(messages=[Message(role="user", content=PROMPT)], **SAMPLING)
    chunks = [chunk async for chunk in provider.stream(request, "default")]
    return chunks[-1].usage.completion_tokens if chunks[-1].usage else 0


def timed(call: Callable[[], int]) -> tuple[float, float, float]:
    """(tokens/s, wall seconds, CPU seconds of this thread) of one call."""
    started, cpu = time.perf_counter(), time.thread_time()
    tokens = call()
    elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu
    assert tokens == MAX_TOKENS, f"expected {MAX_TOKENS} tokens, got {tokens}"
    return tokens / elapsed, elapsed, cpu


def main(rounds: int) -> None:
    load_at_start = os.getloadavg()[0]
    provider = LocalProvider("local", ProviderSettings(type="local", n_parallel=2))
    with asyncio.Runner() as loop:  # one long-lived event loop, as in a server
        engine = loop.run(provider.engine())
        timer = TimedServer(engine.server)
        ways: dict[str, Callable[[], int]] = {
            "raw handle_chat_completions": lambda: raw_complete(engine),
            "LocalProvider.complete": lambda: loop.run(keel_complete(provider)),
            "raw, streaming": lambda: raw_stream(engine),
            "LocalProvider.stream": lambda: loop.run(keel_stream(provider)),
        }
        speeds, added, loop_cpu = measure(ways, rounds, engine, timer)
    report(speeds, added, loop_cpu, rounds)
    print(f"load average at start/end: {load_at_start:.2f}/{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


Samples = dict[str, list[float]]


def measure(ways: dict[str, Callable[[], int]], rounds: int, engine: Engine, timer: TimedServer) -> tuple[Samples, ...]:
    """Tokens/s per way; Keel's added wall seconds and event-loop CPU seconds per provider call."""
    for call in ways.values():  # warm-up: prompt cache, thread pool, imports
        timed(call)
    speeds: dict[str, list[float]] = {name: [] for name in ways}
    added: dict[str, list[float]] = {name: [] for name in ways if name.startswith("LocalProvider")}
    loop_cpu: dict[str, list[float]] = {name: [] for name in added}
    real = engine.server
    for index in range(rounds):
        order = list(ways.items()) if index % 2 == 0 else list(reversed(ways.items()))  # cancels drift
        for name, call in order:
            engine.server = timer if name in added else real
            speed, elapsed, cpu = timed(call)
            speeds[name].append(speed)
            if name in added:
                added[name].append(elapsed - timer.last)
                loop_cpu[name].append(cpu)
    engine.server = real
    return speeds, added, loop_cpu


def report(speeds: Samples, added: Samples, loop_cpu: Samples, rounds: int) -> None:
    median = {name: statistics.median(values) for name, values in speeds.items()}
    baseline = {
        "LocalProvider.complete": "raw handle_chat_completions",
        "LocalProvider.stream": "raw, streaming",
        "raw, streaming": "raw handle_chat_completions",
    }
    print(f"{MAX_TOKENS} tokens per call, {rounds} rounds, median tokens/s (min-max), median of paired ratios")
    for name, values in speeds.items():
        line = f"  {name:<28} {median[name]:7.1f}  ({min(values):.1f}-{max(values):.1f})"
        if name in baseline:  # ratios of the calls made back to back in each round, then their median
            ratio = statistics.median(a / b for a, b in zip(values, speeds[baseline[name]]))
            line += f"  ratio {ratio:.3f} vs {baseline[name]!r}: overhead {(1 - ratio) * 100:+.1f}%"
        print(line)
    print("Keel's own cost per call, median: wall time added around the engine call | event-loop CPU time")
    for name in added:
        call = MAX_TOKENS / median[name]
        wall, cpu = statistics.median(added[name]), statistics.median(loop_cpu[name])
        print(f"  {name:<28} {wall * 1000:6.2f} ms ({wall / call:.2%}) | {cpu * 1000:6.2f} ms ({cpu / call:.2%})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
