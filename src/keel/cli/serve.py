"""`keel serve`: the OpenAI-compatible gateway on the pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ..errors import ConfigError
from ..providers._http import is_loopback
from ..settings import Settings, load_settings


def serve(
    model: str | None = typer.Option(None, "-m", "--model", help="Default model: an alias, provider/model-id, or a .gguf path."),
    host: str | None = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default 8787)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
) -> None:
    """Run the gateway: POST /v1/chat/completions, GET /v1/models, GET /healthz."""
    _apply_model(model)
    if host:
        os.environ["KEEL_HOST"] = host
    if port is not None:
        os.environ["KEEL_PORT"] = str(port)
    settings = load_settings()
    _check_binding(settings)
    if workers > 1 and settings.budgets and not settings.redis_url:
        typer.echo(
            "Warning: without redis_url each worker keeps its own budgets, so --workers N may spend N times "
            "their limits. Set redis_url in keel.toml (or KEEL_REDIS_URL).",
            err=True,
        )
    # Workers re-read the same settings from the environment.
    if settings.source:
        os.environ["KEEL_CONFIG"] = str(settings.source)
    os.environ.setdefault("KEEL_HOME", str(settings.state_dir.resolve()))
    _banner(settings)
    import uvicorn

    uvicorn.run(
        "keel.server.app:create_app",
        factory=True,
        host=settings.gateway.host,
        port=settings.gateway.port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


def _apply_model(model: str | None) -> None:
    if not model:
        return
    if model.endswith(".gguf"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise ConfigError(f"{model}: no such GGUF file. Give the path of a .gguf model file.")
        os.environ["KEEL_LOCAL_MODEL"] = str(path.resolve())
        os.environ["KEEL_DEFAULT_MODEL"] = "local"
    else:
        os.environ["KEEL_DEFAULT_MODEL"] = model


def _check_binding(settings: Settings) -> None:
    host = settings.gateway.host
    if is_loopback(host) or settings.gateway.keys:
        return
    raise ConfigError(
        f"Refusing to bind {host} without gateway keys: anyone who can reach it could spend your budget. "
        "Set KEEL_GATEWAY_KEYS (or gateway.keys in keel.toml), or bind 127.0.0.1."
    )


def _banner(settings: Settings) -> None:
    url = f"http://{settings.gateway.host}:{settings.gateway.port}/v1"
    key = settings.gateway.keys[0] if settings.gateway.keys else "unused"
    typer.echo(
        f"""Keel gateway on {url}  (default model: {settings.default_model}, store: {settings.effective_store_url})

  curl {url}/chat/completions -H 'Content-Type: application/json' \\
    -d '{{"model": "{settings.default_model}", "messages": [{{"role": "user", "content": "Say hello"}}]}}'

  from openai import OpenAI
  client = OpenAI(base_url="{url}", api_key="{key}")
  print(client.chat.completions.create(model="{settings.default_model}",
        messages=[{{"role": "user", "content": "Say hello"}}]).choices[0].message.content)

Traces: keel traces list   ·   Stop: Ctrl+C
""")
