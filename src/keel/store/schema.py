"""The store's tables, as SQLAlchemy Core `Table`s: the current shape, which the migrations build.

Every table lives on `metadata`. A new table or column is added here *and* in a new migration
under `migrations/versions/` (a test checks that the two agree on both dialects).

Columns are nullable unless a query depends on them: the store is a log, and a record with a
missing field is better kept than rejected.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

#: JSON documents: JSONB on PostgreSQL (indexable), JSON text on SQLite. SQL NULL for None.
Document = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

traces = Table(
    "traces",
    metadata,
    Column("id", Text, primary_key=True),  # 32 hex characters
    Column("parent_id", Text),
    Column("kind", Text),
    Column("source", Text),
    Column("started_at", Float, nullable=False),  # epoch seconds
    Column("ended_at", Float),
    Column("latency_ms", Float),
    Column("ttft_ms", Float),
    Column("provider", Text),
    Column("model", Text),  # the name the caller asked for
    Column("upstream_model", Text),
    Column("fingerprint", Text),
    Column("request", Document),
    Column("response", Document),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("cached_tokens", Integer),
    Column("usage_estimated", Boolean),
    Column("cost", Text),  # an exact decimal string; NULL when unknown (never 0)
    Column("cost_source", Text),
    Column("currency", Text),
    Column("status", Text),
    Column("error_class", Text),
    Column("error_message", Text),
    Column("stream", Boolean),
    Column("tags", Document),
    Index("ix_traces_started_at", "started_at"),
    Index("ix_traces_model_started_at", "model", "started_at"),
    Index("ix_traces_parent_id", "parent_id"),
)
