"""Constants shared by test modules (importable because pytest puts tests/ on sys.path)."""

import os

PG_URL = os.environ.get("KEEL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
