"""The identity lookup on PostgreSQL is an index probe a key, whatever the table's size and
statistics (ADRs 0021 and 0050).

A server-side prepared statement gets a generic plan after a few executions. Made while the
table was new and had no statistics, that plan was a sequential scan comparing every row with
the whole key array, and it stayed: on a fresh database, batches of 500 spent two thirds of the
writer's time in the lookup, more with each admission (ADR 0021). Planned for its parameters,
`identity = ANY(keys)` still chose that scan for 500 keys on tables below about 100,000 rows:
half of PostgreSQL's time on the library path (ADR 0050)."""

from __future__ import annotations

import time

import psycopg

from service.composition import build_ledger
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.services import one_row

# Identities of no window the tests admit into: a table where a sequential scan for 500 keys
# is what PostgreSQL's costs prefer, statistics or none.
BULK_ROWS = 20_000
STATS_TIMEOUT_SECONDS = 20.0


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
    assert not [s for s in prepared if "CROSS JOIN LATERAL" in s], prepared


def table_counts(url: str) -> tuple[int, int]:
    """(rows inserted, rows read by sequential scans) of the identity index table, as the
    server has counted them so far (a backend reports its counts when it ends)."""
    inserted, scanned = one_row(
        url,
        "SELECT n_tup_ins, seq_tup_read FROM pg_stat_user_tables "
        "WHERE relname = 'ledger_identities'",
    )
    return int(inserted), int(scanned)


def test_a_batchs_lookup_probes_the_index_on_a_table_a_sequential_scan_would_cost_less_to_plan(
    postgres_url: str,
) -> None:
    ledger = build_ledger(Settings(database_url=postgres_url))
    try:
        ledger.admit("w", batch("w", event("first")))  # the tables exist from here
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO ledger_identities "
                "(identity, window_id, payload_hash, state, bus_offset) "
                "SELECT sha256(g::text::bytea), 'bulk', repeat('0', 64), 'ADMITTED', g "
                "FROM generate_series(1, %s) AS g",
                (BULK_ROWS,),
            )
        # A cached window: its group's lookup (every window of a group in one statement).
        again = [event("first"), *(event(f"e{n}") for n in range(499))]
        results = ledger.admit("w", batch("w", *again))
    finally:
        ledger.close()
    # A window this process has not loaded: the lookup of one window's identities.
    ledger = build_ledger(Settings(database_url=postgres_url))
    try:
        repeated = ledger.admit("w", batch("w", *again[1:], event("last")))
    finally:
        ledger.close()

    assert [r.verdict.value for r in results] == ["DUPLICATE"] + ["ADMITTED"] * 499
    assert [r.verdict.value for r in repeated] == ["DUPLICATE"] * 499 + ["ADMITTED"]
    inserted = 1 + BULK_ROWS + 499 + 1
    deadline = time.monotonic() + STATS_TIMEOUT_SECONDS
    while (counts := table_counts(postgres_url))[0] < inserted:
        assert time.monotonic() < deadline, f"the server never counted the inserts: {counts}"
        time.sleep(0.1)
    # A lookup that compared every row with its keys read the bulk rows at least once.
    assert counts[1] < BULK_ROWS, f"sequential scans read {counts[1]:,} identity rows"
