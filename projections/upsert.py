"""Batched insert-or-update (and insert-or-skip) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import Connection, Table, not_
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignoring_conflicts(conn: Connection, table: Table) -> Any:
    """An INSERT that skips rows whose key is already there."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows (every row has every column). On PostgreSQL as one statement whose one
    parameter is the rows as a JSON array (`json_populate_recordset`): an executemany costs a
    bind and an execute a row, in Python and in the server, and was 40% of the follower's time
    under batches; psycopg's array parameters cost as much in Python (ADR 0032)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), list(rows))
        return
    preparer = conn.dialect.identifier_preparer
    name = preparer.format_table(table)
    names = ", ".join(preparer.format_column(c) for c in table.columns)
    conn.exec_driver_sql(
        f"INSERT INTO {name} ({names}) SELECT {names} "
        f"FROM json_populate_recordset(NULL::{name}, %s::json)",
        (msgspec.json.encode(rows).decode("utf-8"),),
    )


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: list[str],
    *,
    add: Sequence[str] = (),
    keep: Sequence[str] = (),
    unless: Any = None,
) -> None:
    """Insert rows; on a key conflict overwrite the other columns, except that columns in `add`
    are summed with the stored value and columns in `keep` keep the stored value; a stored row
    for which `unless` (a condition on the table) holds is left as it is."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    excluded = stmt.excluded
    updates: dict[str, Any] = {}
    for column in table.columns:
        if column.name in keys or column.name in keep:
            continue
        if column.name in add:
            updates[column.name] = table.c[column.name] + excluded[column.name]
        else:
            updates[column.name] = excluded[column.name]
    where = None if unless is None else not_(unless)
    conn.execute(
        stmt.on_conflict_do_update(index_elements=keys, set_=updates, where=where), list(rows)
    )
