"""Statements rendered to bytes once (ADR 0041): the bytes are the text psycopg would send on a
live connection, and the write path hands psycopg no statement it must render again."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from ledger.infrastructure.pgrender import rendered
from service.composition import build_ledger
from service.settings import Settings
from tests.support.builders import batch, event

NAMES = ["ledger_events", "Mixed Case", 'a "quoted" name', "ünïcödé_tâble", "semi;colon"]

# What the group-commit writer and the streamed save execute in every transaction.
WRITE_PATH = (
    "_upsert",
    "_insert",
    "_delete",
    "_lookup",
    "_newer_events",
    "_insert_events_unnest",
    "_insert_one_originator",
    "_insert_chunk",
    "_insert_chunks",
    "_put_snapshot",
    "_timeout_and_notify",
    "_lock",
)


@pytest.mark.parametrize("name", NAMES)
def test_a_statement_rendered_once_is_the_text_psycopg_sends_on_a_connection(
    postgres_url: str, name: str
) -> None:
    statement = SQL("SELECT {}.{} FROM {} WHERE x = %b AND y = '{}'").format(
        Identifier("public"), Identifier(name), Identifier("public", name), 5
    )
    with psycopg.connect(postgres_url) as conn:
        assert rendered(statement) == statement.as_bytes(conn)
        # And the server reads it as the identifier it names.
        conn.execute(SQL("CREATE TABLE {} (x int)").format(Identifier(name)))
        conn.execute(rendered(SQL("INSERT INTO {} VALUES (1)").format(Identifier(name))))
        row = conn.execute(SQL("SELECT count(*) FROM {}").format(Identifier(name))).fetchone()
        assert row == (1,)


def test_bytes_and_text_are_rendered_as_they_are() -> None:
    assert rendered(b"SELECT 1") == b"SELECT 1"
    assert rendered("SELECT 'é'") == "SELECT 'é'".encode()


def test_the_write_path_gives_psycopg_every_statement_as_bytes(postgres_url: str) -> None:
    ledger = build_ledger(Settings(database_url=postgres_url))
    try:
        recorder = ledger.recorder
        made = {name: type(getattr(recorder, name)).__name__ for name in WRITE_PATH}
        assert made == dict.fromkeys(WRITE_PATH, "bytes")
        # Written with them: a window, its admissions, its snapshot and its index.
        results = ledger.admit("rendered", batch("rendered", event("e1", {"n": 1})))
        assert [r.verdict.value for r in results] == ["ADMITTED"]
        assert ledger.verify("rendered").ok
    finally:
        ledger.close()
