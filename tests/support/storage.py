"""Changing stored history behind the ledger's back, on each backend, through connections of the
test's own: an attacker editing an event (`tamper_stored_event`, `edit_stored_fields`), storage
refusing writes (`fail_inserts_after` ... `heal_inserts`).

SQLite keeps events in `stored_events` (originator ids as hex text); PostgreSQL in
`ledger_events` (originator ids as uuid): `_event_store` says which, the edit is written once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Any

import psycopg

from ledger.domain import window_uuid

Rewrite = Callable[[bytes], bytes]


def _is_sqlite(database_url: str) -> bool:
    return database_url.startswith("sqlite")


def _sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")


@contextmanager
def _event_store(database_url: str) -> Iterator[tuple[Any, str, str]]:
    """A connection of our own (committed when the block ends well), the events table's name and
    the placeholder of this backend's driver."""
    if _is_sqlite(database_url):
        with closing(sqlite3.connect(_sqlite_path(database_url), timeout=30)) as conn, conn:
            yield conn, "stored_events", "?"
    else:
        with psycopg.connect(database_url) as pg:
            yield pg, "ledger_events", "%s"


def rewrite_stored_event(database_url: str, window_id: str, version: int, rewrite: Rewrite) -> None:
    """Replace one stored event's state with `rewrite(state)`, whatever the backend."""
    uuid = window_uuid(window_id)
    key = (uuid.hex if _is_sqlite(database_url) else uuid, version)
    with _event_store(database_url) as (conn, table, p):
        where = f"WHERE originator_id = {p} AND originator_version = {p}"
        row = conn.execute(f"SELECT state FROM {table} {where}", key).fetchone()
        assert row is not None, f"no stored event {version} of window {window_id!r}"
        cursor = conn.execute(
            f"UPDATE {table} SET state = {p} {where}", (rewrite(bytes(row[0])), *key)
        )
        assert cursor.rowcount == 1


def tamper_stored_event(
    database_url: str, window_id: str, version: int, old: bytes, new: bytes
) -> None:
    """Replace bytes inside one stored event's state, as an attacker with database access could."""

    def replace(state: bytes) -> bytes:
        assert old in state, state
        return state.replace(old, new)

    rewrite_stored_event(database_url, window_id, version, replace)


def edit_stored_fields(
    database_url: str, window_id: str, version: int, edit: Callable[[dict[str, Any]], None]
) -> None:
    """Edit one stored event's decoded state in place (`edit(state)`), then store it again."""

    def rewrite(state: bytes) -> bytes:
        data = json.loads(state)
        edit(data)
        return json.dumps(data).encode()

    rewrite_stored_event(database_url, window_id, version, rewrite)


def fail_inserts_after(database_url: str, version: int) -> None:
    """A real trigger that refuses events past `version` (a disk full, a killed connection...)."""
    if _is_sqlite(database_url):
        with closing(sqlite3.connect(_sqlite_path(database_url))) as conn, conn:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON stored_events "
                f"WHEN NEW.originator_version > {version} "
                "BEGIN SELECT RAISE(ABORT, 'storage refused the write'); END"
            )
    else:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.originator_version > {version} THEN "
                "RAISE EXCEPTION 'storage refused the write'; END IF; RETURN NEW; END $$"
            )
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON ledger_events "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )


def heal_inserts(database_url: str) -> None:
    """Drop the trigger of `fail_inserts_after`: storage accepts writes again."""
    if _is_sqlite(database_url):
        with closing(sqlite3.connect(_sqlite_path(database_url))) as conn, conn:
            conn.execute("DROP TRIGGER refuse")
    else:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse ON ledger_events")
