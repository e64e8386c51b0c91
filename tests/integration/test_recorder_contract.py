"""The ledger's recorders keep eventsourcing's own recorder contract.

eventsourcing ships the tests every application recorder must pass
(`eventsourcing.tests.persistence.ApplicationRecorderTestCase`: inserts and selects,
notifications by position, topic and limit, the conflict on a taken version, concurrent writers
and readers) and runs them once per backend in its own suite (tests/persistence_tests/
test_sqlite.py and test_postgres.py). Here the same cases run once per backend against
`LedgerSQLiteRecorder` and `LedgerPostgresRecorder`, which override the library's insert path to
write the identity index in the events' transaction. Each test gets storage of its own: an
SQLite file in a temporary folder, a throwaway PostgreSQL database.

Of the library's per-backend variants, these run: the plain case on each backend, and
PostgreSQL in a schema of its own. Not run: in-memory SQLite (the ledger always uses a file),
text originator ids (a window's id is always a UUID, `window_uuid`, and the PostgreSQL
recorder's own statements cast originator ids to uuid), and PostgreSQL's database function
insert path, which the ledger refuses (see TestLedgerPostgresRecorderRefusals).

The library's cases are unittest TestCases; pytest runs them as they are. The library module is
imported as a module, not its names: pytest collects every TestCase class a test module holds,
and the library's abstract bases must not be collected here. That module imports the library's
AES cipher, so the test dependencies need eventsourcing's `crypto` extra (pycryptodome).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from unittest import TestCase
from uuid import uuid4

import psycopg
from eventsourcing.persistence import (
    ApplicationRecorder,
    InfrastructureFactory,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from eventsourcing.tests import persistence as library_contract
from eventsourcing.utils import Environment

from ledger.infrastructure.postgres import LedgerPostgresRecorder
from ledger.infrastructure.sqlite import LedgerSQLiteRecorder
from service.settings import APPLICATION_NAME, Settings
from tests.support.services import missing_service, postgres_available, throwaway_database

# The events table the ledger's application writes ("ledger_events"; the index beside it is
# "ledger_identities"), rather than the library's default name.
EVENTS_TABLE = f"{APPLICATION_NAME}_events"
SUBSCRIBE_SECONDS = 30


def ledger_recorder_of(database_url: str, **extra_env: str) -> tuple[Any, InfrastructureFactory]:
    """The application recorder the ledger's own settings build for a database URL (through
    the library's factory, as the ledger's Application does), and the factory to close."""
    settings = Settings(database_url=database_url, extra_env=extra_env)
    factory = InfrastructureFactory.construct(
        Environment(APPLICATION_NAME, settings.eventsourcing_env())
    )
    try:
        return factory.application_recorder(), factory
    except BaseException:
        factory.close()
        raise


def close_after_the_librarys_threads(case: TestCase, close: Callable[[], None]) -> None:
    """Close a datastore when the test ends, once the threads the test started have ended.

    The library's concurrent case tells its reader threads to stop but does not wait for them;
    closing an SQLite connection while another thread still reads on it crashes the interpreter
    (a segmentation fault, not an error). So the cleanup waits for those (non-daemon) threads
    first; the connection pools' own workers are daemons and are left to `close`."""
    before = set(threading.enumerate())

    def wait_then_close() -> None:
        started = [t for t in threading.enumerate() if t not in before and not t.daemon]
        for thread in started:
            thread.join(timeout=30)
        alive = [t.name for t in started if t.is_alive()]
        if alive:  # closing under them would crash: leave the datastore to the collector
            case.fail(f"threads the test started are still running: {alive}")
        close()

    case.addCleanup(wait_then_close)


def check_one_insert_of_several_originators(case: TestCase, recorder: ApplicationRecorder) -> None:
    """Beyond the library's cases, which insert one originator's events at a time: the ledger's
    recorders have a path of their own for events of several originators in one insert."""
    first, second = uuid4(), uuid4()
    events = [
        StoredEvent(first, 1, "topic1", b"state1"),
        StoredEvent(second, 1, "topic2", b"state2"),
        StoredEvent(first, 2, "topic3", b"state3"),
    ]

    case.assertEqual(recorder.insert_events(events), [1, 2, 3])

    case.assertEqual(
        [
            (n.id, n.originator_id, n.originator_version, n.topic, n.state)
            for n in recorder.select_notifications(None, 10)
        ],
        [
            (1, first, 1, "topic1", b"state1"),
            (2, second, 1, "topic2", b"state2"),
            (3, first, 2, "topic3", b"state3"),
        ],
    )
    case.assertEqual([e.originator_version for e in recorder.select_events(first)], [1, 2])


# --- SQLite -----------------------------------------------------------------------------------


class TestLedgerSQLiteRecorder(library_contract.ApplicationRecorderTestCase[LedgerSQLiteRecorder]):
    """As the library's TestSQLiteApplicationRecorder, on a file (the ledger never runs on an
    in-memory database, so the library's in-memory variants do not apply)."""

    def setUp(self) -> None:
        super().setUp()
        self.folder = Path(self.enterContext(tempfile.TemporaryDirectory()))

    def create_recorder(self) -> LedgerSQLiteRecorder:
        # The library's settings for its concurrent SQLite cases (a pool for ten writers and
        # two readers).
        datastore = SQLiteDatastore(db_name=str(self.folder / "ledger.db"), pool_size=100)
        # Closed before the folder goes (cleanups run last-in first).
        close_after_the_librarys_threads(self, datastore.close)
        recorder = LedgerSQLiteRecorder(datastore)
        recorder.create_table()
        return recorder

    def test_the_recorder_under_contract_is_the_ledgers_own(self) -> None:
        recorder = self.create_recorder()
        self.assertIs(type(recorder), LedgerSQLiteRecorder)
        self.assertIsInstance(recorder, SQLiteApplicationRecorder)

    def test_one_insert_of_several_originators_numbers_each_event_in_order(self) -> None:
        check_one_insert_of_several_originators(self, self.create_recorder())

    def test_the_ledgers_settings_build_this_recorder_for_an_sqlite_url(self) -> None:
        recorder, factory = ledger_recorder_of(f"sqlite:///{self.folder / 'configured.db'}")
        self.addCleanup(factory.close)
        self.assertIs(type(recorder), LedgerSQLiteRecorder)


# --- PostgreSQL -------------------------------------------------------------------------------


class PostgresStorage(TestCase):
    """A throwaway database per test and a datastore on it, as the library's
    SetupPostgresDatastore makes one (one connection; the concurrent cases resize the pool)."""

    schema = "public"
    enable_db_functions = False
    originator_id_type: Literal["uuid", "text"] = "uuid"

    def setUp(self) -> None:
        super().setUp()
        reason = postgres_available()
        if reason:
            missing_service(reason)  # fails under CI=true, skips loudly elsewhere
        self.database_url = self.enterContext(throwaway_database())
        if self.schema != "public":
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{self.schema}"')
        self.datastore = self.make_datastore(
            pool_size=1,
            max_overflow=0,
            max_waiting=0,
            schema=self.schema,
            originator_id_type=self.originator_id_type,
            enable_db_functions=self.enable_db_functions,
        )
        # Registered after the database: closed before it is dropped.
        close_after_the_librarys_threads(self, self.datastore.close)

    def make_datastore(self, **options: Any) -> PostgresDatastore:
        """A datastore on this test's database, reached as the ledger's settings reach it."""
        env = Settings(database_url=self.database_url).eventsourcing_env()
        return PostgresDatastore(
            env["POSTGRES_DBNAME"],
            env["POSTGRES_HOST"],
            env["POSTGRES_PORT"],
            env["POSTGRES_USER"],
            env["POSTGRES_PASSWORD"],
            **options,
        )


class TestLedgerPostgresRecorder(
    PostgresStorage, library_contract.ApplicationRecorderTestCase[LedgerPostgresRecorder]
):
    """As the library's TestPostgresApplicationRecorder."""

    def create_recorder(self) -> LedgerPostgresRecorder:
        recorder = LedgerPostgresRecorder(self.datastore, events_table_name=EVENTS_TABLE)
        recorder.create_table()
        return recorder

    # The pool sizes the library's PostgreSQL subclass gives its concurrent cases.

    def test_concurrent_no_conflicts(self, initial_position: int = 0) -> None:
        self.datastore.pool.open()
        self.datastore.pool.resize(12, 12)
        super().test_concurrent_no_conflicts(initial_position)

    def test_concurrent_throughput(self) -> None:
        self.datastore.pool.open()
        self.datastore.pool.resize(10, 10)
        super().test_concurrent_throughput()

    def test_insert_subscribe(self) -> None:
        # Optional in the base case; the library runs it for PostgreSQL. The ledger's insert
        # path sends the NOTIFY itself, so a subscriber must still hear every insert.
        self.datastore.pool.open()
        self.datastore.pool.resize(2, 2)
        # Bounded: without the NOTIFY the library's subscription waits for ever.
        failures: list[BaseException] = []

        def subscribe() -> None:
            try:
                self.optional_test_insert_subscribe()
            except BaseException as exc:
                failures.append(exc)

        subscriber = threading.Thread(target=subscribe, daemon=True)
        subscriber.start()
        subscriber.join(timeout=SUBSCRIBE_SECONDS)
        if subscriber.is_alive():
            self.fail(f"a subscriber heard nothing within {SUBSCRIBE_SECONDS} s of the inserts")
        if failures:
            raise failures[0]

    def test_the_recorder_under_contract_is_the_ledgers_own(self) -> None:
        recorder = self.create_recorder()
        self.assertIs(type(recorder), LedgerPostgresRecorder)
        self.assertIsInstance(recorder, PostgresApplicationRecorder)
        self.assertEqual(recorder.index_table, f"{APPLICATION_NAME}_identities")

    def test_one_insert_of_several_originators_numbers_each_event_in_order(self) -> None:
        check_one_insert_of_several_originators(self, self.create_recorder())

    def test_the_ledgers_settings_build_this_recorder_for_a_postgresql_url(self) -> None:
        recorder, factory = ledger_recorder_of(self.database_url)
        self.addCleanup(factory.close)
        self.assertIs(type(recorder), LedgerPostgresRecorder)
        self.assertEqual(recorder.events_table_name, EVENTS_TABLE)


class TestLedgerPostgresRecorderWithSchema(TestLedgerPostgresRecorder):
    """As the library's TestPostgresApplicationRecorderWithSchema: every statement of the
    ledger's recorder names its schema."""

    schema = "myschema"

    def test_the_recorder_writes_in_its_schema(self) -> None:
        self.create_recorder()
        with psycopg.connect(self.database_url) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (self.schema,),
                )
            }
        self.assertEqual(
            tables,
            {
                EVENTS_TABLE,
                f"{APPLICATION_NAME}_identities",
                f"{APPLICATION_NAME}_window_snapshots",
            },
        )


class TestLedgerPostgresRecorderRefusals(PostgresStorage):
    """Where the library's PostgreSQL cases cannot apply to the ledger's recorder, the refusal
    that replaces them (as the library's TestPostgresApplicationRecorderErrors)."""

    # The library also runs its PostgreSQL cases with POSTGRES_ENABLE_DB_FUNCTIONS (inserts
    # through a database function). That path cannot apply to the ledger: it skips
    # `_insert_stored_events`, where the ledger writes the identity index in the events'
    # transaction, so a ledger on it would record events and silently stop indexing them. The
    # ledger refuses it instead; these tests hold the refusal in place of those cases.

    def test_the_database_function_insert_path_is_refused(self) -> None:
        with self.make_datastore(enable_db_functions=True) as datastore:
            with self.assertRaisesRegex(ValueError, "POSTGRES_ENABLE_DB_FUNCTIONS"):
                LedgerPostgresRecorder(datastore, events_table_name=EVENTS_TABLE)
            # The library's own recorder takes that setting: the refusal is the ledger's.
            PostgresApplicationRecorder(datastore, events_table_name=EVENTS_TABLE)

    def test_the_ledgers_settings_refuse_the_database_function_insert_path(self) -> None:
        with self.assertRaisesRegex(ValueError, "POSTGRES_ENABLE_DB_FUNCTIONS"):
            ledger_recorder_of(self.database_url, POSTGRES_ENABLE_DB_FUNCTIONS="y")

    # The library's PostgreSQL cases use an events table name of the longest length PostgreSQL
    # keeps (63). The ledger names its index table after the events table, which would then
    # pass that length and be cut short by PostgreSQL: refused up front, like the library
    # refuses an events table name one character longer.

    def test_an_events_table_name_leaving_no_room_for_the_index_table_name_is_refused(
        self,
    ) -> None:
        longest = "s" * 50 + "stored_events"
        self.assertEqual(len(longest), PostgresApplicationRecorder.MAX_IDENTIFIER_LEN)
        PostgresApplicationRecorder(self.datastore, events_table_name=longest)
        with self.assertRaisesRegex(ProgrammingError, "Identifier too long"):
            LedgerPostgresRecorder(self.datastore, events_table_name=longest)
