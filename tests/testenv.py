"""Constants shared by test modules (importable because pytest puts tests/ on sys.path)."""

import os
import subprocess
import sys

PG_URL = os.environ.get("KEEL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: A fake-provider alias with a known price, for tests that check exact costs.
PRICED = """
default_model = "cheap"
[models.cheap]
provider = "fake"
model = "echo-1"
[models.cheap.price]
input_per_mtok = 2
output_per_mtok = 10
"""


def stored_traces(client: object, limit: int = 100) -> list[dict]:
    """Every trace the client recorded, newest first, once its recorder has flushed."""
    from keel.store import open_store

    assert client.flush()  # type: ignore[attr-defined]
    with open_store(client.settings.effective_store_url) as store:  # type: ignore[attr-defined]
        return store.list_traces(limit=limit)


def run_keel(project: object, *args: str, ok: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`python -m keel ARGS` in `project`, as a person runs it: asserts the exit status (`ok`) and
    that no traceback reached the user. Wide columns keep Rich tables on one line."""
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "keel", *args], cwd=project, capture_output=True, text=True, timeout=timeout, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result
