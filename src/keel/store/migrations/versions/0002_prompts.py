"""The prompt registry (versions, labels, label moves) and the prompt and drift columns of traces.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copy of the column types: a migration must not change when schema.py does.
_document = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

_TRACE_COLUMNS = [
    ("prompt_name", sa.Text),
    ("prompt_version", sa.Text),
    ("prompt_label", sa.Text),
    ("model_drift", sa.Boolean),
    ("notes", _document),
]


def upgrade() -> None:
    # batch_alter_table: plain ALTER TABLE on PostgreSQL, and on SQLite too for adding columns.
    with op.batch_alter_table("traces") as batch:
        for name, type_ in _TRACE_COLUMNS:
            batch.add_column(sa.Column(name, type_))
    op.create_index("ix_traces_prompt_name_started_at", "traces", ["prompt_name", "started_at"])
    _create_prompt_versions()
    _create_prompt_labels()
    _create_prompt_label_moves()


def downgrade() -> None:
    op.drop_table("prompt_label_moves")
    op.drop_table("prompt_labels")
    op.drop_table("prompt_versions")
    op.drop_index("ix_traces_prompt_name_started_at", table_name="traces")
    # On SQLite this copies the table into one without the columns (and rebuilds its indexes).
    with op.batch_alter_table("traces") as batch:
        for name, _ in reversed(_TRACE_COLUMNS):
            batch.drop_column(name)


def _create_prompt_versions() -> None:
    op.create_table(
        "prompt_versions",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("version", sa.Text, primary_key=True),
        sa.Column("definition", _document, nullable=False),
        sa.Column("source_path", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def _create_prompt_labels() -> None:
    op.create_table(
        "prompt_labels",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("label", sa.Text, primary_key=True),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("moved_at", sa.Float, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
    )


def _create_prompt_label_moves() -> None:
    op.create_table(
        "prompt_label_moves",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("old_version", sa.Text),
        sa.Column("new_version", sa.Text, nullable=False),
        sa.Column("moved_at", sa.Float, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_prompt_label_moves_name_moved_at", "prompt_label_moves", ["name", "moved_at"])
