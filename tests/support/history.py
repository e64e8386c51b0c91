"""Removing stored events behind the ledger's back and reading their ids (notification ids), on
each backend; and turning an SQLite events table back into the one the library makes (ids that
SQLite hands out again), as a database made before the ledger kept ids from reuse.

The connection, table name and placeholder per backend are `tests.support.storage`'s.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from ledger.domain import window_uuid
from tests.support.storage import _event_store, _is_sqlite, _sqlite_path

SQLITE_EVENTS = "stored_events"


def _id_column(database_url: str) -> str:
    return "rowid" if _is_sqlite(database_url) else "notification_id"


def _key(database_url: str, window_id: str) -> Any:
    uuid = window_uuid(window_id)
    return uuid.hex if _is_sqlite(database_url) else uuid


def delete_stored_event(database_url: str, window_id: str, version: int) -> int:
    """Delete one stored event of a window, as an operator with database access could; return
    the id it had."""
    with _event_store(database_url) as (conn, table, p):
        where = f"WHERE originator_id = {p} AND originator_version = {p}"
        key = (_key(database_url, window_id), version)
        row = conn.execute(f"SELECT {_id_column(database_url)} FROM {table} {where}", key)
        found = row.fetchone()
        assert found is not None, f"no stored event {version} of window {window_id!r}"
        assert conn.execute(f"DELETE FROM {table} {where}", key).rowcount == 1
        return int(found[0])


def event_ids(database_url: str, window_id: str) -> dict[int, int]:
    """The window's stored events: version -> id (the position the read side follows)."""
    with _event_store(database_url) as (conn, table, p):
        rows = conn.execute(
            f"SELECT originator_version, {_id_column(database_url)} FROM {table} "
            f"WHERE originator_id = {p} ORDER BY originator_version",
            (_key(database_url, window_id),),
        ).fetchall()
    return {int(version): int(id_) for version, id_ in rows}


def newest_event_id(database_url: str) -> int:
    with _event_store(database_url) as (conn, table, _):
        (newest,) = conn.execute(f"SELECT MAX({_id_column(database_url)}) FROM {table}").fetchone()
    return int(newest)


# --- SQLite: the events table as the library makes it ----------------------------------------


def libraries_events_table_statement() -> str:
    """The library's own CREATE TABLE for the SQLite events table (ids are plain rowids)."""
    datastore = SQLiteDatastore(":memory:")
    try:
        (statement,) = SQLiteApplicationRecorder(datastore, SQLITE_EVENTS).create_table_statements
    finally:
        datastore.close()
    return statement


def sqlite_events_table(database_url: str) -> tuple[str, list[tuple[Any, ...]], int | None]:
    """The events table's CREATE statement, its rows (id first, in id order) and the id
    SQLite's AUTOINCREMENT remembers as the highest used (None: it remembers none)."""
    with closing(sqlite3.connect(_sqlite_path(database_url))) as conn:
        (sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (SQLITE_EVENTS,)
        ).fetchone()
        rows = conn.execute(
            "SELECT rowid, originator_id, originator_version, topic, state "
            f"FROM {SQLITE_EVENTS} ORDER BY rowid"
        ).fetchall()
        has_sequence = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
        ).fetchone()
        remembered = (
            conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = ?", (SQLITE_EVENTS,)
            ).fetchone()
            if has_sequence
            else None
        )
    return str(sql), rows, None if remembered is None else int(remembered[0])


def make_events_table_reuse_ids(database_url: str) -> None:
    """Recreate the SQLite events table as the library makes it, keeping every row and its id:
    the database as the ledger left it before it kept ids from reuse."""
    columns = "rowid, originator_id, originator_version, topic, state"
    statement = libraries_events_table_statement()
    with closing(sqlite3.connect(_sqlite_path(database_url), isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"ALTER TABLE {SQLITE_EVENTS} RENAME TO old_events")
        conn.execute(statement)
        conn.execute(f"INSERT INTO {SQLITE_EVENTS} ({columns}) SELECT {columns} FROM old_events")
        conn.execute("DROP TABLE old_events")
        conn.execute("DELETE FROM sqlite_sequence")  # SQLite keeps the table itself
        conn.execute("COMMIT")


def next_id_after_deleting_the_newest(database_url: str) -> tuple[int, int]:
    """(the newest event's id, the id SQLite gives the next insert once that row is deleted),
    found inside a transaction that is rolled back: the database is left as it was."""
    with closing(sqlite3.connect(_sqlite_path(database_url))) as conn:
        try:
            (newest, originator_id, version, topic, state) = conn.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "
                f"FROM {SQLITE_EVENTS} ORDER BY rowid DESC LIMIT 1"
            ).fetchone()
            conn.execute(f"DELETE FROM {SQLITE_EVENTS} WHERE rowid = ?", (newest,))
            inserted = conn.execute(
                f"INSERT INTO {SQLITE_EVENTS} (originator_id, originator_version, topic, state) "
                "VALUES (?, ?, ?, ?)",
                (originator_id, version, topic, state),
            ).lastrowid
        finally:
            conn.rollback()
    assert inserted is not None
    return int(newest), int(inserted)
