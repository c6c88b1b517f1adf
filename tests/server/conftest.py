"""Run the real gateway (uvicorn + the Keel app) on 127.0.0.1 in a background thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from keel.client import AsyncClient
from keel.server.app import Gateway, create_app
from keel.settings import load_settings


class RunningGateway:
    def __init__(self, app: Gateway, port: int) -> None:
        self.app = app
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/v1"

    @property
    def client(self) -> AsyncClient:
        return self.app.client


@contextlib.contextmanager
def run_gateway(app: Gateway) -> Iterator[RunningGateway]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", loop="asyncio", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("gateway did not start")
        time.sleep(0.01)
    try:
        yield RunningGateway(app, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def write_config(project: Path, text: str) -> Path:
    path = project / "keel.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def gateway(project: Path) -> Iterator[RunningGateway]:
    """A gateway on the default settings (fake and local providers), without retries so that
    one queued failure is the answer."""
    write_config(project, "[routing]\nretries = 0\n")
    with run_gateway(create_app(load_settings())) as running:
        yield running
