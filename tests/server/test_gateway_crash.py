"""A gateway killed with SIGKILL under load loses no trace of any request it answered."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from keel.store import open_store


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(project: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KEEL_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "keel", "serve"], cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "gateway did not start")


def _ask(port: int, index: int) -> str | None:
    body = json.dumps({"model": "fake/x", "messages": [{"role": "user", "content": f"request {index}"}]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers["x-keel-trace-id"]
    except OSError:
        return None  # the gateway died before answering: nothing was promised


def test_sigkill_under_load_loses_no_answered_trace(project: Path) -> None:
    port = _free_port()
    gateway = _start(project, port)
    answered: list[str] = []
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_ask, port, i) for i in range(600)]
        while len(answered) < 150:
            answered = [f.result() for f in futures if f.done() and f.result()]
            time.sleep(0.01)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait()
        answered = [tid for f in futures if (tid := f.result())]
    gateway.stderr.close()
    assert 150 <= len(answered) < 600

    restarted = _start(project, port)  # on start it imports the dead gateway's journal
    try:
        store = open_store(f"sqlite:///{project / '.keel' / 'keel.db'}")
        deadline = time.monotonic() + 60
        missing = set(answered)
        while missing and time.monotonic() < deadline:
            missing = {tid for tid in missing if store.get_trace(tid) is None}
            time.sleep(0.2)
        store.close()
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(30)
        restarted.stderr.close()
    assert not missing, f"{len(missing)} answered requests have no trace"
