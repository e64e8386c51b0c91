"""Looking at the read side from outside: table checksums, table names, tracking positions.

Everything here talks to the database through its own short-lived connections, so it sees what a
separate process would see.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Engine, MetaData, Table, create_engine, inspect, select, text

from projections.store import sqlalchemy_url

# Every read model a projection owns (rm_window_names and rm_tracking are bookkeeping).
READ_MODEL_TABLES = (
    "rm_receipts",
    "rm_receipt_sources",
    "rm_admitted",
    "rm_quarantine",
    "rm_activity",
    "rm_pending",
)
PROJECTIONS = ("receipts", "admitted", "quarantine", "activity", "pending")


# --- looking at the database from outside ------------------------------------------------


@contextlib.contextmanager
def engine_for(database_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        yield engine
    finally:
        engine.dispose()


def table_rows(engine: Engine, name: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Every column of the table as it is in the database now, rows ordered by primary key."""
    table = Table(name, MetaData(), autoload_with=engine)
    columns = [c.name for c in table.columns]
    primary_key = [c for c in table.primary_key.columns]
    assert primary_key, f"{name} has no primary key"
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(select(table).order_by(*primary_key))]
    return columns, rows


def table_checksum(engine: Engine, name: str) -> str:
    columns, rows = table_rows(engine, name)
    digest = hashlib.sha256()
    digest.update(json.dumps(columns).encode())
    for row in rows:
        digest.update(b"\n" + json.dumps(list(row), sort_keys=True, default=str).encode())
    return f"{len(rows)} rows sha256:{digest.hexdigest()}"


def checksums(database_url: str, tables: Sequence[str] = READ_MODEL_TABLES) -> dict[str, str]:
    """A checksum of every read-model table (every column, rows in primary-key order)."""
    with engine_for(database_url) as engine:
        return {name: table_checksum(engine, name) for name in tables}


def table_names(database_url: str) -> set[str]:
    with engine_for(database_url) as engine:
        return set(inspect(engine).get_table_names())


def tracking_positions(database_url: str) -> dict[str, int]:
    with engine_for(database_url) as engine, engine.connect() as conn:
        rows = conn.execute(text("SELECT name, position FROM rm_tracking"))
        return {name: int(position) for name, position in rows}
