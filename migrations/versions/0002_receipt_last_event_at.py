"""Receipts gain last_event_at (when the window last recorded anything).

Existing rows read NULL until `ledger projections rebuild receipts` fills them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rm_receipts") as batch:
        batch.add_column(sa.Column("last_event_at", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("rm_receipts") as batch:
        batch.drop_column("last_event_at")
