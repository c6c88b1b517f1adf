"""The acceptance test: a hard budget holds when 200 requests race through two gateway workers.

`keel serve --workers 2` runs two processes that share the budget through Redis. The budget fits
exactly 50 worst cases, and 51 real costs would pass it, so exactly 50 requests are answered
whatever the interleaving; the other 150 get HTTP 429 `budget_exceeded`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keel.budgets import BudgetStage, RedisLedger, budget_status
from keel.budgets.worst_case import MESSAGE_TOKENS, REQUEST_TOKENS
from keel.client import AsyncClient
from keel.pipeline import ProviderStage
from keel.settings import Settings, load_settings

from .conftest import REDIS_URL, delete_keys, redis_available

D = Decimal
INPUT, OUTPUT = D("0.0001"), D("1")  # per token: 100 and 1,000,000 per million
# {"role": "user", "content": "hi"}: prompt bound 4 + 2 bytes + 8 + 64 = 78 tokens; max_tokens 2.
BOUND = 4 + 2 + MESSAGE_TOKENS + REQUEST_TOKENS
WORST = BOUND * INPUT + 2 * OUTPUT  # 2.0078
# The fake answers "Echo: hi": 1 prompt word, 2 completion words.
REAL = 1 * INPUT + 2 * OUTPUT  # 2.0001
LIMIT = 50 * WORST  # 100.39: 50 worst cases always fit; 51 real costs (102.0051) never do
assert 50 * REAL <= LIMIT < 51 * REAL
REQUESTS = 200

CONFIG = """
redis_url = "{redis}"

[routing]
retries = 0

[models.m]
provider = "fake"
model = "echo"
[models.m.price]
input_per_mtok = "100"
output_per_mtok = "1000000"

[[budgets]]
name = "{name}"
limit = "{limit}"
period = "day"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(project: Path, port: int) -> subprocess.Popen[bytes]:
    log = (project / "gateway.log").open("wb")
    command = [sys.executable, "-m", "keel", "serve", "--workers", "2", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=project, stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError("gateway did not start:\n" + (project / "gateway.log").read_text())


def _ask(port: int, index: int) -> tuple[int, dict[str, Any]]:
    """One request (every other one streamed); (status, the usage or the error body)."""
    stream = index % 2 == 1
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    if not stream:
        return 200, json.loads(raw)["usage"]
    events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
    [usage] = [event["usage"] for event in events if event.get("usage")]
    return 200, usage


def _workers_connected(prefix: str) -> set[int]:
    """PIDs of the processes holding a budget connection to Redis (RedisLedger names them)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        names = [c.get("name", "") for c in client.client_list()]
    finally:
        client.close()
    return {int(name.removeprefix(prefix)) for name in names if name.startswith(prefix)}


def _parent(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return -1


def _require_wiring(settings: Settings) -> None:
    client = AsyncClient(settings, record=False)
    stage, found = client.pipeline, False
    while not isinstance(stage, ProviderStage):
        found = found or isinstance(stage, BudgetStage)
        stage = stage.inner
    asyncio.run(client.aclose())
    assert found, "BudgetStage is not in AsyncClient's pipeline: wire with_budgets into client._build_pipeline"


def test_a_hard_budget_holds_when_requests_race_through_two_workers(project: Path) -> None:
    if not redis_available():
        pytest.skip(f"no Redis at {REDIS_URL}")
    name = f"race-{os.urandom(6).hex()}"
    (project / "keel.toml").write_text(CONFIG.format(redis=REDIS_URL, name=name, limit=LIMIT), encoding="utf-8")
    _require_wiring(load_settings(project / "keel.toml"))
    port = _free_port()
    gateway = _start(project, port)
    try:
        with ThreadPoolExecutor(64) as pool:
            outcomes = list(pool.map(lambda i: _ask(port, i), range(REQUESTS)))
            workers = {pid for pid in _workers_connected("keel-budgets-") if _parent(pid) == gateway.pid}
            for _ in range(20):  # one worker may have accepted every connection: more bursts, all refused
                if len(workers) == 2:
                    break
                late = list(pool.map(lambda i: _ask(port, i), range(64)))
                assert all(status == 429 and body["error"]["type"] == "budget_exceeded" for status, body in late), late[:3]
                workers = {pid for pid in _workers_connected("keel-budgets-") if _parent(pid) == gateway.pid}
        settings = load_settings(project / "keel.toml")

        async def read() -> list[dict[str, Any]]:
            ledger = RedisLedger(REDIS_URL)
            try:
                return await budget_status(settings, ledger)
            finally:
                await ledger.aclose()

        deadline = time.monotonic() + 10
        [row] = asyncio.run(read())
        while row["reserved"] and time.monotonic() < deadline:  # the last settles land just after their answers
            time.sleep(0.05)
            [row] = asyncio.run(read())
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
        delete_keys(f"keel:budget:*:{name}:*")

    answered = [body for status, body in outcomes if status == 200]
    refused = [(status, body) for status, body in outcomes if status != 200]
    spent = sum((u["prompt_tokens"] * INPUT + u["completion_tokens"] * OUTPUT for u in answered), D(0))
    print(f"\nrace: answered {len(answered)}, refused {len(refused)}, spent {spent} (ledger {row['spent']}) "
          f"of limit {LIMIT}; worst case {WORST}, real cost {REAL}; workers {sorted(workers)}")

    assert len(answered) + len(refused) == REQUESTS
    assert all(status == 429 and body["error"]["type"] == "budget_exceeded" for status, body in refused), refused[:3]
    assert len(answered) == 50
    assert spent == row["spent"] == 50 * REAL <= LIMIT
    assert row["reserved"] == 0 and row["period"] == datetime.now(UTC).strftime("%Y-%m-%d")
    assert len(workers) == 2, f"expected both workers to have served budgeted requests, saw PIDs {workers}"
