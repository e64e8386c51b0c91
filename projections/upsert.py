"""Batched insert-or-update (and insert-or-skip) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import BigInteger, Boolean, Connection, Integer, String, Table, Text, not_
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignoring_conflicts(conn: Connection, table: Table) -> Any:
    """An INSERT that skips rows whose key is already there."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows (every row has every column). On PostgreSQL as one binary `COPY` (ADR
    0051): the server takes each row's fields in its columns' own binary form, where a
    statement over the rows as one JSON array (`json_populate_recordset`, ADR 0032) made it
    parse that array and convert every field, about a third more of its time a row."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), list(rows))
        return
    columns = list(table.columns)
    types = [_COPY_TYPES[type(c.type)] for c in columns]
    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.format_column(c) for c in columns)
    fields = itemgetter(*(c.name for c in columns))
    # The connection's own psycopg connection: the COPY joins the step's transaction.
    driver = conn.connection.driver_connection
    assert driver is not None
    statement = f"COPY {preparer.format_table(table)} ({names}) FROM STDIN (FORMAT BINARY)"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(fields(row))


# The PostgreSQL type a column's values are sent as, by its SQLAlchemy type: `varchar` takes
# `text`'s binary form (and still checks its length).
_COPY_TYPES: dict[type[Any], str] = {
    String: "text",
    Text: "text",
    BigInteger: "int8",
    Integer: "int4",
    Boolean: "bool",
}


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
