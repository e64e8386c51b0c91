"""The PostgreSQL cluster of a test's own (tests/support/pgcluster.py): what fault tests rely on
when they stop, pause, kill and restart a database. The shared server on 127.0.0.1:5432 is never
touched here."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.support.pgcluster import PostgresCluster, database_url_on, own_postgres  # noqa: F401


def test_a_cluster_of_the_tests_own_accepts_connections_and_refuses_them_once_stopped(
    own_postgres: PostgresCluster,  # noqa: F811
) -> None:
    assert own_postgres.port != 5432
    with psycopg.connect(own_postgres.url(), connect_timeout=5) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None and row[0] == str(own_postgres.data_dir)

    own_postgres.stop()

    assert not own_postgres.accepts_tcp()
    began = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(own_postgres.url(), connect_timeout=5).close()
    assert time.monotonic() - began < 2, "a stopped cluster refuses at once, it does not hang"

    own_postgres.start()
    with psycopg.connect(own_postgres.url(), connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_paused_cluster_holds_connections_without_answering_until_resumed(
    own_postgres: PostgresCluster,  # noqa: F811
) -> None:
    url = database_url_on(own_postgres)
    answered: list[object] = []
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as held:
        own_postgres.pause()
        try:
            query = threading.Thread(
                target=lambda: answered.append(held.execute("SELECT 42").fetchone())
            )
            query.start()
            began = time.monotonic()
            with pytest.raises(psycopg.OperationalError, match="timeout"):
                psycopg.connect(url, connect_timeout=2).close()
            assert time.monotonic() - began >= 1.5, "a paused cluster hangs, it does not refuse"
            assert own_postgres.accepts_tcp(), "the paused cluster still holds its port"
            assert query.is_alive() and answered == []
        finally:
            own_postgres.resume()
        query.join(timeout=10)
        assert answered == [(42,)]
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_killed_cluster_recovers_its_committed_rows_on_restart(
    own_postgres: PostgresCluster,  # noqa: F811
) -> None:
    url = database_url_on(own_postgres)
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE admitted (n integer PRIMARY KEY)")
        conn.execute("INSERT INTO admitted SELECT generate_series(1, 100)")
    with psycopg.connect(url, connect_timeout=5) as in_flight:
        in_flight.execute("INSERT INTO admitted VALUES (1000)")  # never committed

        own_postgres.kill()

        assert not own_postgres.accepts_tcp()
        with pytest.raises(psycopg.OperationalError):
            in_flight.execute("SELECT 1")

    own_postgres.start()
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.execute("SELECT count(*), max(n) FROM admitted").fetchone() == (100, 100)
    assert "database system was interrupted" in own_postgres.log()


def test_a_cluster_closed_by_its_owner_leaves_no_process_and_no_data_behind(
    own_postgres: PostgresCluster,  # noqa: F811
) -> None:
    postmaster = own_postgres.process
    assert postmaster is not None
    own_postgres.pause()

    own_postgres.close()

    assert postmaster.poll() is not None
    assert not own_postgres.accepts_tcp()
    assert not own_postgres.runtime_dir.exists()
