"""Read-model tables (SQLAlchemy Core). Alembic migrations in `migrations/` create and evolve them.

JSON columns hold RFC 8785 canonical text, so a table's content (and its checksum) is the same
on every backend and after every rebuild.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# Which window a stored event belongs to: events other than WindowOpened carry only its uuid.
window_names = Table(
    "rm_window_names",
    metadata,
    Column("window_uuid", String(36), primary_key=True),
    Column("window_id", String(128), nullable=False),
)

# Each projection's position in the notification log, written with its view updates.
tracking = Table(
    "rm_tracking",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

receipts = Table(
    "rm_receipts",
    metadata,
    Column("window_id", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("gate", String(16), nullable=False),
    Column("gate_reasons", Text, nullable=False),  # JSON list
    Column("admitted", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
    Column("quarantined", Integer, nullable=False),
    Column("publish_unknown", Integer, nullable=False),
    Column("reconciled", Integer, nullable=False),
    Column("pending_unknown", Integer, nullable=False),
    Column("bus_first", BigInteger),
    Column("bus_last", BigInteger),
    Column("opened_at", String(32), nullable=False),
    Column("closed_at", String(32)),
    Column("events", Integer, nullable=False),
    Column("chain_head", String(64), nullable=False),
    Column("summary", Text),  # the WindowClosed summary, JSON
    Column("last_event_at", String(32)),  # added by migration 0002
)

receipt_sources = Table(
    "rm_receipt_sources",
    metadata,
    Column("window_id", String(128), primary_key=True),
    Column("partition", String(256), primary_key=True),
    Column("min_offset", BigInteger, nullable=False),
    Column("max_offset", BigInteger, nullable=False),
)

admitted = Table(
    "rm_admitted",
    metadata,
    Column("window_id", String(128), primary_key=True),
    Column("identity", String(64), primary_key=True),
    Column("event_type", String(128), nullable=False),
    Column("event_id", String(256), nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    Column("payload_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # ADMITTED or UNKNOWN
    Column("bus_offset", BigInteger),
    Column("source", Text),  # JSON or NULL
    Column("version", BigInteger),  # of the event the row comes from (migration 0003)
    Index("rm_admitted_by_offset", "window_id", "bus_offset"),
    Index("rm_admitted_by_version", "window_id", "version"),  # the scrub's paging
)

quarantine = Table(
    "rm_quarantine",
    metadata,
    Column("window_id", String(128), primary_key=True),
    Column("identity", String(64), primary_key=True),
    Column("received_hash", String(64), primary_key=True),
    # A mismatch that arrived after close (contract s.9), outside the sealed history.
    Column("late", Boolean, primary_key=True, nullable=False, default=False),
    Column("first_position", BigInteger, nullable=False),  # stable order for paging
    Column("event_type", String(128), nullable=False),
    Column("event_id", String(256), nullable=False),
    Column("original_hash", String(64), nullable=False),
    Column("received_payload", Text, nullable=False),  # JSON
    Column("occurrences", Integer, nullable=False),
    Column("first_seen", String(32), nullable=False),
    Column("last_seen", String(32), nullable=False),
    Index("rm_quarantine_by_position", "first_position"),
)

# Admissions by verdict per minute of each window (the window page's chart; migration 0004).
activity = Table(
    "rm_activity",
    metadata,
    Column("window_id", String(128), primary_key=True),
    Column("minute", String(16), primary_key=True),  # YYYY-MM-DDTHH:MM of recorded_at (UTC)
    Column("verdict", String(16), primary_key=True),
    Column("n", Integer, nullable=False),
)

# Identities whose publish outcome is UNKNOWN now, since when (the window page; migration 0004).
pending = Table(
    "rm_pending",
    metadata,
    Column("window_id", String(128), primary_key=True),
    Column("identity", String(64), primary_key=True),
    Column("event_type", String(128), nullable=False),
    Column("event_id", String(256), nullable=False),
    Column("reason", Text, nullable=False),
    Column("since", String(32), nullable=False),
    Column("version", BigInteger, nullable=False),
)

# --- evidence: belongs to no projection, so a rebuild never touches it (migration 0003) --------

# The latest integrity check of each window (verify, start, scrub, an admitted page, the
# follower): a FAIL here keeps the gate FAIL whatever the read models say.
integrity = Table(
    "ev_integrity",
    metadata,
    Column("window_id", String(128), primary_key=True),
    Column("ok", Boolean, nullable=False),
    Column("reasons", Text, nullable=False),  # JSON list
    Column("events", BigInteger),
    Column("head", String(64)),
    Column("checked_at", String(32), nullable=False),
    Column("source", String(32), nullable=False),
)

# Each closed window's receipt as signed at close (JCS JSON, with its "signature").
signed_receipts = Table(
    "ev_signed_receipts",
    metadata,
    Column("window_id", String(128), primary_key=True),
    Column("receipt", Text, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signed_at", String(32), nullable=False),
)
