"""`keel init`: write a commented starter keel.toml."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError
from ..files import atomic_write
from ..settings import CONFIG_NAME

STARTER = '''# keel.toml: Keel's project file. Every key is optional; with no file Keel runs on the
# embedded local model and a SQLite store under .keel/. KEEL_* environment variables override it.

# The model used when a call names none: an alias below, or provider/model-id.
default_model = "local"

# Where traces, prompt versions and eval runs are kept (any SQLAlchemy URL).
# store_url = "postgresql+psycopg://user@127.0.0.1:5432/keel"

[gateway]
host = "127.0.0.1"   # binding elsewhere requires keys
port = 8787
# keys = ["change-me"]   # or KEEL_GATEWAY_KEYS; clients send Authorization: Bearer <key>

# Providers: who runs the model and where. `local` (embedded llama.cpp) and `fake` always exist.
# [providers.local]
# model_path = "models/my-instruct-model.gguf"   # any GGUF; default: bundled SmolLM2-135M-Instruct
# n_parallel = 2

# [providers.openai]
# type = "openai"                      # any OpenAI-compatible endpoint (vLLM, Ollama, Azure, …)
# base_url = "https://api.openai.com/v1"
# api_key_env = "OPENAI_API_KEY"
# region = "us"
# jurisdiction = "US"

# [providers.claude]
# type = "anthropic"
# api_key_env = "ANTHROPIC_API_KEY"

# Models: the names your application uses, bound to a provider's model id.
[models.local]
provider = "local"
model = "default"

# [models.fast]
# provider = "openai"
# model = "gpt-4o-mini"
# [models.fast.price]                  # only for models the price catalog does not know
# input_per_mtok = 0.15
# output_per_mtok = 0.60
'''


EXAMPLE_PROMPT = """\
# A prompt file: versioned by its content, pinned with its model in keel.lock (`keel lock`).
description: Extract a contact's name and email address from free text
model: local
params: {temperature: 0, max_tokens: 120, seed: 7}
input:
  text: string
output:
  type: object
  properties:
    name: {type: string, maxLength: 60}
    email: {type: string, maxLength: 80}
  required: [name, email]
  additionalProperties: false
messages:
  - role: system
    content: "{% include 'house_style.j2' %}"
  - role: user
    content: |
      Extract the contact's name and email address from this text:
      {{ text }}
tags: [example]
reference_input: {text: "Reach Ada Lovelace at ada@example.com about the engine."}
"""

EXAMPLE_PARTIAL = "You are a precise assistant. Answer only with what is asked.\n"


def init(
    directory: Path = typer.Argument(Path("."), help="Project directory."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing keel.toml."),
) -> None:
    """Write a commented starter keel.toml."""
    target = directory / CONFIG_NAME
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists. Use --force to overwrite it.")
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory. Create it first.")
    _write(target, STARTER)
    prompts = directory / "prompts"
    example = prompts / "extract_contact.prompt.yaml"
    if not example.exists():
        (prompts / "partials").mkdir(parents=True, exist_ok=True)
        _write(prompts / "partials" / "house_style.j2", EXAMPLE_PARTIAL)
        _write(example, EXAMPLE_PROMPT)
        typer.echo(f"Wrote {example}")
    typer.echo(f"Wrote {target}")


def _write(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))
