"""The write path's statements sent straight through libpq (ADR 0049), on PostgreSQL.

They are prepared once per pooled connection under names of their own; psycopg deallocates
every prepared statement of a connection after some of its own commands. Whatever was
deallocated, the next read and the next write answer as before: the read prepares again, the
write runs its command again (nothing was recorded by the attempt that met the missing
statement)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from ledger.application import Ledger
from ledger.infrastructure.pgwire import Wire, numbered
from ledger.ports import Chunk, Lookup
from ledger.verdicts import Verdict
from service.composition import build_ledger
from service.settings import Settings
from tests.support.builders import batch, event, identity


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[Ledger]:
    built = build_ledger(Settings(database_url=postgres_url))
    try:
        yield built
    finally:
        built.close()


@contextmanager
def every_pooled_connection(ledger: Ledger) -> Iterator[list[psycopg.Connection[Any]]]:
    pool = ledger.recorder.datastore.pool
    held = [pool.getconn() for _ in range(pool.get_stats()["pool_size"])]
    try:
        yield held
    finally:
        for conn in held:
            pool.putconn(conn)


def ledger_statements(ledger: Ledger) -> list[str]:
    with every_pooled_connection(ledger) as held:
        return [
            str(row["name"])
            for conn in held
            for row in conn.execute("SELECT name FROM pg_prepared_statements")
            if str(row["name"]).startswith("ledger_")
        ]


def deallocate_everything(ledger: Ledger) -> None:
    with every_pooled_connection(ledger) as held:
        for conn in held:
            conn.execute("DEALLOCATE ALL")
    assert ledger_statements(ledger) == []


def verdicts(results: list[Any]) -> list[Verdict]:
    return [r.verdict for r in results]


def test_admissions_after_every_statement_was_deallocated_get_the_verdicts_of_a_serial_run(
    ledger: Ledger,
) -> None:
    ledger.admit("w1", batch("w1", event("a"), event("b")))
    assert ledger_statements(ledger), "the write path prepared nothing under its own names"
    deallocate_everything(ledger)

    results = ledger.admit("w1", batch("w1", event("a"), event("c"), event("b", {"id": "x"})))
    again = ledger.admit("w1", batch("w1", event("d")))

    assert verdicts(results) == [Verdict.DUPLICATE, Verdict.ADMITTED, Verdict.QUARANTINED]
    assert verdicts(again) == [Verdict.ADMITTED]
    assert ledger_statements(ledger), "the statements were not prepared again"
    recorded = [e["type"] for e in ledger.history("w1")]
    assert recorded.count("EventAdmitted") == 4  # a, b, c, d: nothing twice
    assert recorded.count("DuplicateAbsorbed") == 1
    assert recorded.count("MismatchQuarantined") == 1


def test_a_write_that_meets_a_deallocated_statement_records_nothing_and_asks_for_a_rerun(
    ledger: Ledger,
) -> None:
    ledger.admit("w1", batch("w1", *(event(str(i)) for i in range(3))))
    window = ledger.get_window("w1")
    recorder: Any = ledger.recorder
    pool = recorder.datastore.pool
    # Every pooled connection but one held here: the recorder writes on that one.
    others = [pool.getconn() for _ in range(pool.get_stats()["pool_size"] - 1)]
    try:
        recorder.insert_event_stream([Chunk((), (), ledger.loader.take(window))])  # prepares
        with pool.connection() as conn:
            conn.execute("DEALLOCATE ALL")
        newer = ledger.loader.take(window)._replace(version=window.version + 1)

        with pytest.raises(IntegrityError, match="missing statement"):
            recorder.insert_event_stream([Chunk((), (), newer)])
        assert recorder.latest_snapshot(window.id).version == window.version  # not recorded

        recorder.insert_event_stream([Chunk((), (), newer)])  # prepared anew
        assert recorder.latest_snapshot(window.id).version == window.version + 1
    finally:
        for conn in others:
            pool.putconn(conn)


def test_a_read_after_every_statement_was_deallocated_answers_what_it_answered_before(
    ledger: Ledger,
) -> None:
    ledger.admit("w1", batch("w1", event("a"), event("b")))
    ledger.admit("w2", batch("w2", event("a")))
    lookups = [
        Lookup(ledger.get_window(w).id, 1, w, [identity(w, "a"), identity(w, "b")])
        for w in ("w1", "w2")
    ]
    pool = ledger.recorder.datastore.pool
    # Every pooled connection but one held here: the recorder reads on that one.
    others = [pool.getconn() for _ in range(pool.get_stats()["pool_size"] - 1)]
    try:
        before = ledger.recorder.catch_up_and_look_up_many(lookups)  # prepares
        with pool.connection() as conn:
            conn.execute("DEALLOCATE ALL")
        after = ledger.recorder.catch_up_and_look_up_many(lookups)
    finally:
        for conn in others:
            pool.putconn(conn)

    assert after == before
    (w1_newer, w1_known), (w2_newer, w2_known) = after
    assert [e.originator_version for e in w1_newer] == [2, 3]
    assert set(w1_known) == {identity("w1", "a"), identity("w1", "b")}
    assert [e.originator_version for e in w2_newer] == [2]
    assert set(w2_known) == {identity("w2", "a")}


def test_a_failed_statement_leaves_the_connection_idle_for_the_pool(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero), Wire(conn) as wire:
            wire.execute(b"BEGIN", prepare=False)
            wire.execute(b"SELECT 1 / %b", (0,))
            wire.execute(b"SELECT %b::text", ("never answered",))
            wire.sync()
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)


def test_placeholders_are_numbered_in_order_and_a_doubled_percent_is_one() -> None:
    assert numbered(b"SELECT %b, %s WHERE a LIKE 'x%%' AND b = %b") == (
        b"SELECT $1, $2 WHERE a LIKE 'x%' AND b = $3"
    )
