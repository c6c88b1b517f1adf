"""Eval runs and their per-answer results (`keel eval`).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copy of the column types: a migration must not change when schema.py does.
_document = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("suite", sa.Text, nullable=False),
        sa.Column("suite_hash", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("config", _document),
        sa.Column("summary", _document),
    )
    op.create_index("ix_eval_runs_suite_started_at", "eval_runs", ["suite", "started_at"])
    op.create_table(
        "eval_results",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("case_id", sa.Text, primary_key=True),
        sa.Column("model", sa.Text, primary_key=True),
        sa.Column("prompt", sa.Text, primary_key=True),
        sa.Column("repeat", sa.Integer, primary_key=True),
        sa.Column("output", sa.Text),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("assertions", _document),
        sa.Column("error", sa.Text),
        sa.Column("latency_ms", sa.Float),
        sa.Column("prompt_tokens", sa.Integer),
        sa.Column("completion_tokens", sa.Integer),
        sa.Column("cost", sa.Text),
        sa.Column("trace_id", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("eval_results")
    op.drop_index("ix_eval_runs_suite_started_at", table_name="eval_runs")
    op.drop_table("eval_runs")
