"""The PostgreSQL application recorder that also writes the identity index in the events'
transaction, and streams a batch's chunks down one pipelined transaction (ADR 0011).

The index maps identity -> (window, payload hash, state, offset). It is what makes a verdict one
query instead of a replay, and it is derivable from the windows' histories.
`Application.save(window, index_changes=[...])` passes those rows down to
`_insert_stored_events`, so events and index commit or roll back together. The only module that
touches the library's internals (its connection handling; the lock and NOTIFY of its
`_lock_table` and `_notify_channel`, sent in fewer statements: ADR 0041).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import Connection, Cursor
from psycopg import errors as pg_errors
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal

from ledger.infrastructure import pgarrays
from ledger.infrastructure.logpages import PostgresLogPages
from ledger.infrastructure.pgarrays import ByteaArray, Int8Array, TextArray
from ledger.infrastructure.pgchunks import (
    HeldChunks,
    insert_chunks_parameters,
    insert_chunks_statement,
)
from ledger.infrastructure.pgreads import IdentityReads, PendingReads
from ledger.infrastructure.pgrender import rendered, statement
from ledger.infrastructure.pgschema import SerializedSchema
from ledger.infrastructure.pgsnapshots import PostgresSnapshots
from ledger.infrastructure.pgwire import Executes, Wire
from ledger.ports import Chunk, IndexChange, LockedRead, WindowSnapshot

LOOKUP_CHUNK = 500
STATEMENT_TIMEOUT_MS = 120_000
_BEGIN = b"BEGIN"
_COMMIT = b"COMMIT"


class LedgerPostgresRecorder(
    SerializedSchema,
    IdentityReads,
    PostgresSnapshots,
    PostgresLogPages,
    PostgresApplicationRecorder,
):
    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        if self.datastore.enable_db_functions:
            # The library's database-function insert path skips _insert_stored_events, where
            # the index is written: refuse rather than silently stop indexing.
            raise ValueError("POSTGRES_ENABLE_DB_FUNCTIONS is not supported by the ledger")
        if self.datastore.originator_id_type != "uuid":
            # Window ids are UUIDs (ledger.domain.window_uuid); the statements below cast to uuid.
            raise ValueError("POSTGRES_ORIGINATOR_ID_TYPE must be uuid for the ledger")
        self._bound_reconnection()
        self._statement_timeout = SQL("SET statement_timeout = {}").format(STATEMENT_TIMEOUT_MS)
        # Pooled connections taught the array wrappers of the write path (pgarrays).
        self._taught: weakref.WeakSet[Connection[Any]] = weakref.WeakSet()
        prefix = events_table_name.removesuffix("_events")
        # Keyed by the identity alone: it is a hash over the window id, so it is unique across
        # windows, and a one-column key halves the cost of the batch lookup (ADR 0011).
        self.index_table = f"{prefix}_identities"
        self.check_identifier_length(self.index_table)
        schema = Identifier(self.datastore.schema)
        table = SQL("{}.{}").format(schema, Identifier(self.index_table))
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {table} ("
                "identity bytea PRIMARY KEY, window_id text NOT NULL, "
                "payload_hash text NOT NULL, state text NOT NULL, bus_offset bigint)"
            ).format(table=table)
        )
        # Databases made before ADR 0011 hold the index keyed by (window_id, identity) under
        # its old name: carry its rows over once, then drop it.
        legacy = SQL("{}.{}").format(schema, Identifier(f"{prefix}_identity_index"))
        self.sql_create_statements.append(
            SQL(
                "DO $$ BEGIN "
                "IF to_regclass({legacy_name}) IS NOT NULL THEN "
                "INSERT INTO {table} (identity, window_id, payload_hash, state, bus_offset) "
                "SELECT decode(identity, 'hex'), window_id, payload_hash, state, bus_offset "
                "FROM {legacy} "
                "ON CONFLICT (identity) DO NOTHING; "
                "DROP TABLE {legacy}; "
                "END IF; END $$"
            ).format(
                table=table,
                legacy=legacy,
                legacy_name=Literal(f"{self.datastore.schema}.{prefix}_identity_index"),
            )
        )
        self._upsert = statement(
            "INSERT INTO {table} (window_id, identity, payload_hash, state, bus_offset) "
            "SELECT %b::text, * FROM unnest(%b::bytea[], %b::text[], %b::text[], %b::bigint[]) "
            "ON CONFLICT (identity) DO UPDATE SET "
            "payload_hash=EXCLUDED.payload_hash, state=EXCLUDED.state, "
            "bus_offset=EXCLUDED.bus_offset",
            table=table,
        )
        self._insert = statement(
            "INSERT INTO {table} (window_id, identity, payload_hash, state, bus_offset) "
            "SELECT %b::text, * FROM unnest(%b::bytea[], %b::text[], %b::text[], %b::bigint[])",
            table=table,
        )
        self._delete = statement("DELETE FROM {table} WHERE identity = ANY(%b)", table=table)
        # One index probe a key, whatever the table's size or statistics (ADR 0050): the
        # LIMIT keeps the planner from flattening the subquery into a join it could hash.
        self._lookup = statement(
            "SELECT i.identity, i.payload_hash, i.state, i.bus_offset "
            "FROM unnest(%b::bytea[]) AS k(identity) CROSS JOIN LATERAL ("
            "SELECT * FROM {table} AS l WHERE l.identity = k.identity AND l.window_id = %b "
            "LIMIT 1) AS i",
            table=table,
        )
        # A group's windows' identities in one lookup (ADR 0041): each row says its window.
        self._lookup_any_window = statement(
            "SELECT i.identity, i.window_id, i.payload_hash, i.state, i.bus_offset "
            "FROM unnest(%b::bytea[]) AS k(identity) CROSS JOIN LATERAL ("
            "SELECT * FROM {table} AS l WHERE l.identity = k.identity LIMIT 1) AS i",
            table=table,
        )
        # Typed arrays sent in binary (%b) instead of the library's composite-type array,
        # which psycopg dumps as escaped text (a quarter of the write path's time).
        events = SQL("{}.{}").format(schema, Identifier(self.events_table_name))
        self._insert_events_unnest = statement(
            "INSERT INTO {events} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id",
            events=events,
        )
        # The usual case, one aggregate's events: its id once instead of once per row.
        self._insert_one_originator = statement(
            "INSERT INTO {events} (originator_id, originator_version, topic, state) "
            "SELECT %b::uuid, * FROM unnest(%b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id",
            events=events,
        )
        self._newer_events = statement(
            "SELECT originator_version, topic, state FROM {events} "
            "WHERE originator_id = %b AND originator_version > %b ORDER BY originator_version",
            events=events,
        )
        # A streamed chunk of one window's arrivals: its new index rows and its events in one
        # statement (one round of psycopg's per-statement work instead of two).
        self._insert_chunk = statement(
            "WITH new_rows AS ("
            "INSERT INTO {table} (window_id, identity, payload_hash, state, bus_offset) "
            "SELECT %b::text, * FROM "
            "unnest(%b::bytea[], %b::text[], %b::text[], %b::bigint[])) "
            "INSERT INTO {events} (originator_id, originator_version, topic, state) "
            "SELECT %b::uuid, * FROM unnest(%b::bigint[], %b::text[], %b::bytea[])",
            table=table,
            events=events,
        )
        self._insert_chunks = rendered(insert_chunks_statement(table, events))  # of windows
        self._count = statement(
            "SELECT state, COUNT(*) AS n FROM {table} WHERE window_id = %s GROUP BY state",
            table=table,
        )
        self._define_snapshots(schema, prefix)  # ADR 0017
        # Every write transaction's first statements (ADR 0041): the library's SET LOCAL of the
        # lock timeout and its NOTIFY as one statement (two functions), then the table lock.
        self._timeout_and_notify = rendered(
            SQL("SELECT set_config('lock_timeout', {}, true), pg_notify({}, '')").format(
                Literal(f"{self.datastore.lock_timeout}s"), Literal(self.channel_name)
            )
        )
        self._lock = rendered(
            SQL("LOCK TABLE {}.{} IN EXCLUSIVE MODE").format(
                schema, Identifier(self.events_table_name)
            )
        )

    def _lock_and_notify(self, curs: Executes) -> None:
        """What the library's `_lock_table` and `_notify_channel` do, in two statements
        rendered once instead of three made and rendered each time (ADR 0041)."""
        curs.execute(self._timeout_and_notify, prepare=True)
        curs.execute(self._lock, prepare=True)

    def _bound_reconnection(self) -> None:
        """While the database is away, keep every wait shorter than a request's deadline, and
        reconnect within seconds of its return (ADR 0027): libpq's connect gets a timeout (a
        server that accepts but never answers would hold a pool worker for ever), and a pool
        that cannot connect gives up its backoff (1, 2, 4, ... 32 s after a minute) after as
        long as a request waits for a connection, so the next request's attempt is immediate."""
        pool = self.datastore.pool
        wait = max(1, int(pool.timeout))
        if isinstance(pool.kwargs, dict):
            pool.kwargs.setdefault("connect_timeout", wait)
        pool.reconnect_timeout = float(wait)

    def _insert_stored_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        *,
        index_changes: Sequence[IndexChange] = (),
        snapshot: WindowSnapshot | None = None,
        **kwargs: Any,
    ) -> None:
        # The library made this cursor (and copied its adapters) before we could teach its
        # connection: teach both (close and reconcile come here; admissions stream).
        self._teach(curs.connection)
        pgarrays.register(curs.adapters)
        # Take the table lock before touching the index, so that every writer queues on the
        # same lock first and two transactions can never deadlock on index rows.
        self._lock_and_notify(curs)
        with curs.connection.cursor() as index_curs:
            self._write_index(index_curs, index_changes)
            self._write_snapshot(index_curs, snapshot)
        # The events insert goes last on `curs`: the caller reads its RETURNING rows.
        self._send_events(curs, stored_events)

    @contextmanager
    def _connection(self) -> Iterator[Connection[DictRow]]:
        with self.datastore.get_connection() as conn:
            self._teach(conn)
            yield conn

    def _teach(self, conn: Connection[Any]) -> None:
        if conn not in self._taught:
            pgarrays.register(conn.adapters)
            # A backstop for a write statement that never ends (the lock and idle timeouts
            # bound the usual ways to get stuck; ADR 0026); far above any the ledger makes.
            conn.execute(self._statement_timeout)
            self._taught.add(conn)

    def _write_index(self, curs: Executes, index_changes: Sequence[IndexChange]) -> None:
        groups: dict[tuple[str, bool], list[IndexChange]] = {}
        for ch in index_changes:
            if ch.state is not None:
                groups.setdefault((ch.window_id, ch.new), []).append(ch)
        for (window_id, new), rows in groups.items():
            curs.execute(
                self._insert if new else self._upsert,
                (
                    window_id,
                    ByteaArray([bytes.fromhex(ch.identity) for ch in rows]),
                    TextArray([ch.payload_hash for ch in rows]),
                    TextArray([ch.state.value for ch in rows if ch.state is not None]),
                    Int8Array([ch.offset for ch in rows]),
                ),
                prepare=True,
            )
        deletes = [bytes.fromhex(ch.identity) for ch in index_changes if ch.state is None]
        if deletes:
            curs.execute(self._delete, (ByteaArray(deletes),))

    def _send_events(self, curs: Executes, stored_events: Sequence[StoredEvent]) -> None:
        originator_id = stored_events[0].originator_id
        if all(
            e.originator_id is originator_id or e.originator_id == originator_id
            for e in stored_events
        ):
            curs.execute(
                self._insert_one_originator,
                (
                    originator_id,
                    Int8Array([e.originator_version for e in stored_events]),
                    TextArray([e.topic for e in stored_events]),
                    ByteaArray([e.state for e in stored_events]),
                ),
                prepare=True,
            )
            return
        curs.execute(
            self._insert_events_unnest,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
        )

    def _send_chunk(
        self, curs: Executes, events: Sequence[StoredEvent], changes: Sequence[IndexChange]
    ) -> None:
        if events and changes:
            window_id, originator_id = changes[0].window_id, events[0].originator_id
            if all(
                ch.new and ch.state is not None and ch.window_id == window_id for ch in changes
            ) and all(e.originator_id is originator_id for e in events):
                curs.execute(
                    self._insert_chunk,
                    (
                        window_id,
                        ByteaArray([bytes.fromhex(ch.identity) for ch in changes]),
                        TextArray([ch.payload_hash for ch in changes]),
                        TextArray([ch.state.value for ch in changes if ch.state is not None]),
                        Int8Array([ch.offset for ch in changes]),
                        originator_id,
                        Int8Array([e.originator_version for e in events]),
                        TextArray([e.topic for e in events]),
                        ByteaArray([e.state for e in events]),
                    ),
                    prepare=True,
                )
                return
        if events:
            self._send_events(curs, events)
        self._write_index(curs, changes)

    def _send_chunks(self, curs: Executes, chunks: Iterable[Chunk], locked: bool) -> None:
        held = HeldChunks()  # small chunks go together (ADR 0038)
        for events, changes, snapshot in chunks:
            if not locked and (events or changes):
                # Before the first insert and before the index (the order every writer takes),
                # as the library does.
                self._lock_and_notify(curs)
                locked = True
            if not held.hold(events, changes):
                self._send_held(curs, held)
                self._send_chunk(curs, events, changes)
            self._write_snapshot(curs, snapshot)
        self._send_held(curs, held)

    def _send_held(self, curs: Executes, held: HeldChunks) -> None:
        chunks = held.take()
        if len(chunks) == 1:
            self._send_chunk(curs, *chunks[0])
        elif chunks:
            curs.execute(self._insert_chunks, insert_chunks_parameters(chunks), prepare=True)

    def insert_event_stream(
        self, chunks: Iterable[Chunk], lock_first: bool = False, read: LockedRead | None = None
    ) -> None:
        """One pipelined transaction sent straight through libpq (ADR 0049): each chunk's
        statements go to the server as soon as the chunk is made, so the server writes chunk k
        while Python makes chunk k+1 (two cores). Same statements, same lock, same
        all-or-nothing as `insert_events`; a unique violation (another writer took the
        version) surfaces as eventsourcing's IntegrityError, raised inside get_connection,
        which turns psycopg's errors into the library's."""
        with self._connection() as conn:
            try:
                # BEGIN and COMMIT are statements of the pipeline: the whole batch, commit
                # included, costs one sync. A failure rolls back (Wire.close).
                with Wire(conn) as wire:
                    wire.execute(_BEGIN, prepare=False)
                    locked = False
                    if lock_first:
                        # Wait for the lock before the first chunk is made: what the generator
                        # reads from now on no other writer can outdate.
                        self._lock_and_notify(wire)
                        pending = PendingReads()
                        if read is not None:  # in the lock's round trip
                            self.send_reads(wire, read.lookups, pending)
                        results = wire.sync()
                        if read is not None:
                            read.found = pending.fetch(results)
                        locked = True
                    self._send_chunks(wire, chunks, locked)
                    wire.execute(_COMMIT, prepare=False)
                    wire.sync()
            except pg_errors.InvalidSqlStatementName as exc:
                # The connection's statements were deallocated (pgwire); nothing was recorded:
                # the command runs again, and they are prepared anew.
                raise IntegrityError(f"the streamed write met a missing statement: {exc}") from exc

    def count_identities(self, window_id: str) -> dict[str, int]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._count, (window_id,))
            return {row["state"]: row["n"] for row in curs.fetchall()}
