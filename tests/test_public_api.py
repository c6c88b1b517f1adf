"""The public surface is pinned, and `import keel` stays light."""

from __future__ import annotations

import re
import subprocess
import sys

import keel

EXPECTED = {
    "AllProvidersFailed", "AsyncClient", "Chain", "ChainStepError", "CircuitOpen", "FunctionStep", "OutputSpec", "PromptStep", "AuthenticationFailed", "BudgetExceeded", "Capabilities", "ChatRequest",
    "ChatResponse", "Chunk", "Client", "ConfigError", "Cost", "FakeProvider", "InvalidRequest", "KeelError",
    "Message", "MissingCredentials", "OutputValidationError", "PolicyViolation", "PromptError", "PromptNotFound",
    "PromptRenderError", "Provider", "ProviderConnectionError", "ProviderError", "ProviderTimeout", "RateLimited",
    "ReplayMissing", "RequestError", "ResponseFormat", "ServerError", "Settings", "StoreError", "UnexpectedResponse", "UnknownModel",
    "Usage", "hookimpl", "load_settings",
}


def test_exported_members_are_pinned() -> None:
    exported = {name for name in dir(keel) if not name.startswith("_")}
    modules = {name for name in exported if type(getattr(keel, name)).__name__ == "module"}
    assert exported - modules == EXPECTED


def test_every_error_is_a_keel_error() -> None:
    for name in EXPECTED:
        value = getattr(keel, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, keel.KeelError), name


HEAVY = ("aiohttp", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "xllamacpp", "genai_prices", "typer", "jsonschema", "redis")


def test_import_keel_pulls_in_no_web_db_or_model_runtime() -> None:
    code = "import sys, keel; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())
    assert loaded.isdisjoint(HEAVY), loaded & set(HEAVY)


def test_core_modules_do_not_import_server_or_cli() -> None:
    from pathlib import Path

    root = Path(keel.__file__).parent
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).parts
        if relative[0] in ("server", "cli", "__main__.py"):
            continue
        imports = re.findall(r"^\s*(?:from|import) (\S+)", path.read_text(), re.MULTILINE)
        for name in imports:
            parts = set(name.lstrip(".").split("."))
            assert not parts & {"server", "cli"}, (path, name)


def test_import_keel_loads_the_client_only_when_asked_for() -> None:
    code = "import sys, keel; a = 'keel.client' in sys.modules; keel.AsyncClient; print(a, 'keel.client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["False", "True"]
