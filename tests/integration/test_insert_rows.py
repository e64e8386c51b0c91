"""`projections.upsert.insert_rows`, the admitted read model's bulk write (a binary COPY on
PostgreSQL, ADR 0051; an executemany on SQLite), on both backends: every value comes back as
it went in, and a row the table refuses takes the whole transaction's rows with it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, select

from projections.tables import admitted
from projections.upsert import insert_rows

AWKWARD_TEXT = 'a "quoted" \\ back\\slash, a\nnewline, a\ttab, \u00e9t\u00e9, \u4e2d, \U0001f600'


def row(identity: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "window_id": "w-insert",
        "identity": identity,
        "event_type": "order.created",
        "event_id": f"evt-{identity}",
        "payload": '{"amount":1}',
        "payload_hash": "0" * 64,
        "state": "ADMITTED",
        "bus_offset": 1,
        "source": None,
        "version": 2,
    }
    return {**base, **changes}


def stored(services: Any) -> list[dict[str, Any]]:
    with services.store.reader.connect() as conn:
        query = select(admitted).where(admitted.c.window_id == "w-insert")
        return [dict(r._mapping) for r in conn.execute(query.order_by(admitted.c.identity))]


def test_rows_inserted_together_read_back_exactly_with_nulls_and_the_largest_integers(services):
    rows = [
        row("a", event_id=AWKWARD_TEXT, payload=AWKWARD_TEXT, source=AWKWARD_TEXT),
        row("b", bus_offset=None, version=None, source=None, state="UNKNOWN"),
        row("c", bus_offset=2**63 - 1, version=-(2**63), event_type="", event_id=""),
        row("d" * 64, window_id="w-other", event_id="x" * 256),
    ]
    with services.store.writer.begin() as conn:
        insert_rows(conn, admitted, rows)
    assert stored(services) == [r for r in rows if r["window_id"] == "w-insert"]
    with services.store.reader.connect() as conn:
        other = conn.execute(select(admitted).where(admitted.c.window_id == "w-other")).one()
    assert dict(other._mapping) == rows[3]


def test_a_row_the_table_refuses_fails_the_insert_and_keeps_the_transactions_rows_out(services):
    with services.store.writer.begin() as conn:
        insert_rows(conn, admitted, [row("kept")])
    with (
        pytest.raises(Exception, match=r"(?i)unique|duplicate"),
        services.store.writer.begin() as conn,
    ):
        insert_rows(conn, admitted, [row("first")])
        insert_rows(conn, admitted, [row("second"), row("kept")])  # "kept" is there already
    assert [r["identity"] for r in stored(services)] == ["kept"]
    # The connection goes back to the pool usable: the next transaction writes.
    with services.store.writer.begin() as conn:
        insert_rows(conn, admitted, [row("after")])
        conn.execute(delete(admitted).where(admitted.c.identity == "kept"))
    assert [r["identity"] for r in stored(services)] == ["after"]


def test_a_value_longer_than_its_column_is_never_cut_short(services, backend):
    too_long = row("long", event_id="x" * 257)
    if backend == "sqlite":
        # SQLite does not enforce VARCHAR lengths: the value is kept whole.
        with services.store.writer.begin() as conn:
            insert_rows(conn, admitted, [too_long])
        assert stored(services) == [too_long]
        return
    with (
        pytest.raises(Exception, match=r"(?i)too long"),
        services.store.writer.begin() as conn,
    ):
        insert_rows(conn, admitted, [too_long])
    assert stored(services) == []
