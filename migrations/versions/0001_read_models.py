"""Read models: window names, tracking, receipts, source ranges, admitted events, quarantine.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rm_window_names",
        sa.Column("window_uuid", sa.String(36), primary_key=True),
        sa.Column("window_id", sa.String(128), nullable=False),
    )
    op.create_table(
        "rm_tracking",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rm_receipts",
        sa.Column("window_id", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("gate", sa.String(16), nullable=False),
        sa.Column("gate_reasons", sa.Text, nullable=False),
        sa.Column("admitted", sa.Integer, nullable=False),
        sa.Column("duplicates", sa.Integer, nullable=False),
        sa.Column("quarantined", sa.Integer, nullable=False),
        sa.Column("publish_unknown", sa.Integer, nullable=False),
        sa.Column("reconciled", sa.Integer, nullable=False),
        sa.Column("pending_unknown", sa.Integer, nullable=False),
        sa.Column("bus_first", sa.BigInteger),
        sa.Column("bus_last", sa.BigInteger),
        sa.Column("opened_at", sa.String(32), nullable=False),
        sa.Column("closed_at", sa.String(32)),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("chain_head", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text),
    )
    op.create_table(
        "rm_receipt_sources",
        sa.Column("window_id", sa.String(128), primary_key=True),
        sa.Column("partition", sa.String(256), primary_key=True),
        sa.Column("min_offset", sa.BigInteger, nullable=False),
        sa.Column("max_offset", sa.BigInteger, nullable=False),
    )
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
    )
    op.create_index("rm_admitted_by_offset", "rm_admitted", ["window_id", "bus_offset"])
    op.create_table(
        "rm_quarantine",
        sa.Column("window_id", sa.String(128), primary_key=True),
        sa.Column("identity", sa.String(64), primary_key=True),
        sa.Column("received_hash", sa.String(64), primary_key=True),
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


def downgrade() -> None:
    for table in [
        "rm_quarantine",
        "rm_admitted",
        "rm_receipt_sources",
        "rm_receipts",
        "rm_tracking",
        "rm_window_names",
    ]:
        op.drop_table(table)
