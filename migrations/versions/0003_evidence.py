"""Evidence that outlives a rebuild (contract s.9): integrity checks, signed receipts; admitted
rows remember the version of their event; quarantine entries can be late anomalies.

`ev_integrity` and `ev_signed_receipts` belong to no projection: a rebuild never touches them.
`rm_admitted` and `rm_quarantine` are made anew with their new columns and replayed from the
start by the follower (their tracking rows go).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_REPLAYED = ("admitted", "quarantine")


def _admitted(with_version: bool) -> None:
    op.create_table(
        "rm_admitted",
        sa.Column("window_id", sa.String(128), primary_key=True),
        sa.Column("identity", sa.String(64), primary_key=True),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("bus_offset", sa.BigInteger),
        sa.Column("source", sa.Text),
        *([sa.Column("version", sa.BigInteger)] if with_version else []),
    )
    op.create_index("rm_admitted_by_offset", "rm_admitted", ["window_id", "bus_offset"])
    if with_version:  # the scrub pages the read model in history order
        op.create_index("rm_admitted_by_version", "rm_admitted", ["window_id", "version"])


def _quarantine(with_late: bool) -> None:
    op.create_table(
        "rm_quarantine",
        sa.Column("window_id", sa.String(128), primary_key=True),
        sa.Column("identity", sa.String(64), primary_key=True),
        sa.Column("received_hash", sa.String(64), primary_key=True),
        *(
            [sa.Column("late", sa.Boolean, primary_key=True, nullable=False, default=False)]
            if with_late
            else []
        ),
        sa.Column("first_position", sa.BigInteger, nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("original_hash", sa.String(64), nullable=False),
        sa.Column("received_payload", sa.Text, nullable=False),
        sa.Column("occurrences", sa.Integer, nullable=False),
        sa.Column("first_seen", sa.String(32), nullable=False),
        sa.Column("last_seen", sa.String(32), nullable=False),
    )
    op.create_index("rm_quarantine_by_position", "rm_quarantine", ["first_position"])


def _replay_from_the_start() -> None:
    names = [*_REPLAYED, *(f"{n}__next" for n in _REPLAYED)]
    tracking = sa.table("rm_tracking", sa.column("name", sa.String))
    op.execute(tracking.delete().where(tracking.c.name.in_(names)))


def upgrade() -> None:
    op.create_table(
        "ev_integrity",
        sa.Column("window_id", sa.String(128), primary_key=True),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("events", sa.BigInteger),
        sa.Column("head", sa.String(64)),
        sa.Column("checked_at", sa.String(32), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
    )
    op.create_table(
        "ev_signed_receipts",
        sa.Column("window_id", sa.String(128), primary_key=True),
        sa.Column("receipt", sa.Text, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.String(32), nullable=False),
    )
    op.drop_table("rm_admitted")
    op.drop_table("rm_quarantine")
    _admitted(with_version=True)
    _quarantine(with_late=True)
    _replay_from_the_start()


def downgrade() -> None:
    op.drop_table("ev_signed_receipts")
    op.drop_table("ev_integrity")
    op.drop_table("rm_admitted")
    op.drop_table("rm_quarantine")
    _admitted(with_version=False)
    _quarantine(with_late=False)
    _replay_from_the_start()
