"""Eval results say whether their answer came from the response cache (a re-run of a suite).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("eval_results") as batch:
        batch.add_column(sa.Column("cached", sa.Boolean))


def downgrade() -> None:
    with op.batch_alter_table("eval_results") as batch:
        batch.drop_column("cached")
