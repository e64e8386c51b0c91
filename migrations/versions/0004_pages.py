"""The reviewer's pages: admissions by verdict per minute (`rm_activity`, the window page's
chart) and the identities whose publish outcome is unknown now, since when (`rm_pending`).

Both belong to new projections (`activity`, `pending`): they have no tracking rows yet, so the
follower replays them from the start of the log after this upgrade.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NEW = ("activity", "pending")


def _forget_positions() -> None:
    # A database that once ran these projections (then downgraded) replays them from the start.
    names = [*_NEW, *(f"{n}__next" for n in _NEW)]
    tracking = sa.table("rm_tracking", sa.column("name", sa.String))
    op.execute(tracking.delete().where(tracking.c.name.in_(names)))


def upgrade() -> None:
    op.create_table(
        "rm_activity",
        sa.Column("window_id", sa.String(128), primary_key=True),
        sa.Column("minute", sa.String(16), primary_key=True),
        sa.Column("verdict", sa.String(16), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_table(
        "rm_pending",
        sa.Column("window_id", sa.String(128), primary_key=True),
        sa.Column("identity", sa.String(64), primary_key=True),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("since", sa.String(32), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    _forget_positions()


def downgrade() -> None:
    op.drop_table("rm_pending")
    op.drop_table("rm_activity")
    _forget_positions()
