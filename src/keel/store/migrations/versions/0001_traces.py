"""The traces table.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copy of the column types: a migration must not change when schema.py does.
_document = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "traces",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("parent_id", sa.Text),
        sa.Column("kind", sa.Text),
        sa.Column("source", sa.Text),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
        sa.Column("latency_ms", sa.Float),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("provider", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("upstream_model", sa.Text),
        sa.Column("fingerprint", sa.Text),
        sa.Column("request", _document),
        sa.Column("response", _document),
        sa.Column("prompt_tokens", sa.Integer),
        sa.Column("completion_tokens", sa.Integer),
        sa.Column("cached_tokens", sa.Integer),
        sa.Column("usage_estimated", sa.Boolean),
        sa.Column("cost", sa.Text),
        sa.Column("cost_source", sa.Text),
        sa.Column("currency", sa.Text),
        sa.Column("status", sa.Text),
        sa.Column("error_class", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("stream", sa.Boolean),
        sa.Column("tags", _document),
    )
    op.create_index("ix_traces_started_at", "traces", ["started_at"])
    op.create_index("ix_traces_model_started_at", "traces", ["model", "started_at"])
    op.create_index("ix_traces_parent_id", "traces", ["parent_id"])


def downgrade() -> None:
    op.drop_table("traces")
