"""The identity lookup on PostgreSQL is planned for the table as it is now (ADR 0021).

A server-side prepared statement gets a generic plan after a few executions. Made while the
table was new and had no statistics, that plan was a sequential scan comparing every row with
the whole key array, and it stayed: on a fresh database, batches of 500 spent two thirds of the
writer's time in the lookup, more with each admission."""

from __future__ import annotations

from service.composition import build_ledger
from service.settings import Settings
from tests.support.builders import batch, event


def test_the_identity_lookup_is_never_a_prepared_statement_while_the_writes_are(
    postgres_url: str,
) -> None:
    ledger = build_ledger(Settings(database_url=postgres_url))
    try:
        # More executions than psycopg and PostgreSQL need to settle on a generic plan.
        for n in range(12):
            ledger.admit("w1", batch("w1", event(f"a{n}"), event(f"b{n}")))
            ledger.admit(f"w{n}", batch(f"w{n}", event("a0")))
        pool = ledger.recorder.datastore.pool
        held = [pool.getconn() for _ in range(pool.get_stats()["pool_size"])]
        try:
            prepared = [
                str(row["statement"])
                for conn in held
                for row in conn.execute("SELECT statement FROM pg_prepared_statements")
            ]
        finally:
            for conn in held:
                pool.putconn(conn)
    finally:
        ledger.close()
    assert any("INSERT INTO" in statement for statement in prepared), prepared
    assert not [s for s in prepared if "identity = ANY" in s]
