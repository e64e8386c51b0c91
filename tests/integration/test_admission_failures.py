"""A save that fails inside the database must leave nothing behind, not even in the cache."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import psycopg
import pytest

from ledger.errors import Contention
from tests.conftest import batch, event


def _fail_inserts_after(database_url: str, version: int) -> None:
    """A real trigger that refuses events past `version` (a disk full, a killed connection...)."""
    if database_url.startswith("sqlite"):
        with closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as conn, conn:
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


def _heal(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        with closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as conn, conn:
            conn.execute("DROP TRIGGER refuse")
    else:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse ON ledger_events")


def test_a_failed_save_leaves_no_trace_and_the_retry_records_without_a_gap(ledger, database_url):
    ledger.admit("w", batch("w", event("1"), event("2")))  # versions 1-3; the window is cached
    _fail_inserts_after(database_url, 3)
    with pytest.raises((Contention, Exception)):
        ledger.admit("w", batch("w", event("3"), event("1")))
    assert len(ledger.history("w")) == 3
    assert ledger.index.count_identities("w") == {"ADMITTED": 2}

    _heal(database_url)
    results = ledger.admit("w", batch("w", event("3"), event("1")))
    assert [(r.verdict.value, r.offset) for r in results] == [("ADMITTED", 3), ("DUPLICATE", 1)]
    history = ledger.history("w")
    assert [h["version"] for h in history] == [1, 2, 3, 4, 5]
    assert ledger.verify("w").ok
