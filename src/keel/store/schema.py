"""The store's tables, as SQLAlchemy Core `Table`s: the current shape, which the migrations build.

Every table lives on `metadata`. A new table or column is added here *and* in a new migration
under `migrations/versions/` (a test checks that the two agree on both dialects).

Trace columns are nullable unless a query depends on them: the trace table is a log, and a record
with a missing field is better kept than rejected. The prompt registry (versions, labels and the
history of label moves) is not a log but the record of what runs in production: its columns are
required unless they say otherwise.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, LargeBinary, MetaData, Table, Text
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
    Column("prompt_name", Text),
    Column("prompt_version", Text),  # 64 hex characters (sha256 of the definition)
    Column("prompt_label", Text),  # the label the version was resolved through, if any
    Column("model_drift", Boolean),  # the provider reported another model than keel.lock pins
    Column("notes", Document),  # what pipeline stages record: attempts, fallbacks, cache hits
    Index("ix_traces_started_at", "started_at"),
    Index("ix_traces_model_started_at", "model", "started_at"),
    Index("ix_traces_parent_id", "parent_id"),
    Index("ix_traces_prompt_name_started_at", "prompt_name", "started_at"),
)

#: Every version of every prompt ever used: content-addressed, never changed once written.
prompt_versions = Table(
    "prompt_versions",
    metadata,
    Column("name", Text, primary_key=True),
    Column("version", Text, primary_key=True),  # 64 hex characters
    Column("definition", Document, nullable=False),  # the normalized definition that was hashed
    Column("source_path", Text),
    Column("created_at", Float, nullable=False),
)

#: Where each label (prod, staging, …) of each prompt points now.
prompt_labels = Table(
    "prompt_labels",
    metadata,
    Column("name", Text, primary_key=True),
    Column("label", Text, primary_key=True),
    Column("version", Text, nullable=False),
    Column("moved_at", Float, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text),
)

#: Every label move, appended in the same transaction as the move itself.
prompt_label_moves = Table(
    "prompt_label_moves",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("old_version", Text),  # None when the move created the label
    Column("new_version", Text, nullable=False),
    Column("moved_at", Float, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text),
    Index("ix_prompt_label_moves_name_moved_at", "name", "moved_at"),
)

#: The response cache (keel.cache): an answer by request key, until it expires (epoch seconds).
response_cache = Table(
    "response_cache",
    metadata,
    Column("key", Text, primary_key=True),  # sha256 of the canonical request, 64 hex characters
    Column("value", LargeBinary, nullable=False),  # the encoded answer (JSON bytes)
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_response_cache_expires_at", "expires_at"),
)

#: One run of an eval suite (`keel eval run`): what ran, and when finished, its summary.
eval_runs = Table(
    "eval_runs",
    metadata,
    Column("id", Text, primary_key=True),  # 32 hex characters
    Column("suite", Text, nullable=False),
    Column("suite_hash", Text, nullable=False),  # sha256 of the suite, its dataset and prompt versions
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("status", Text, nullable=False),  # running, finished, interrupted, failed
    Column("config", Document),
    Column("summary", Document),
    Index("ix_eval_runs_suite_started_at", "suite", "started_at"),
)

#: One answer of one eval run: a case, under one prompt and model, at one repeat.
eval_results = Table(
    "eval_results",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("case_id", Text, primary_key=True),
    Column("model", Text, primary_key=True),
    Column("prompt", Text, primary_key=True),
    Column("repeat", Integer, primary_key=True),
    Column("output", Text),
    Column("passed", Boolean, nullable=False),
    Column("score", Float, nullable=False),
    Column("assertions", Document),  # each assertion's outcome: type, passed, score, message, details
    Column("error", Text),  # the call failed: the error's class and message
    Column("latency_ms", Float),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("cost", Text),  # an exact decimal string; NULL when unknown (never 0)
    Column("trace_id", Text),
    Column("created_at", Float, nullable=False),
    Column("cached", Boolean),  # the answer came from the response cache (NULL: saved before 0005)
)
