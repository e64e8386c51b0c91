"""Application recorders that also write the identity index in the events' transaction.

The index maps (window_id, identity) -> (payload hash, state, offset). It is what makes a
verdict one query instead of a replay, and it is derivable from the windows' histories.
`Application.save(window, index_changes=[...])` passes those rows down to the recorder (SQLite:
`_insert_events`; PostgreSQL: `_insert_stored_events`), so events and index commit or roll back
together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from ledger.verdicts import IdentityState, Known

LOOKUP_CHUNK = 500


@dataclass(frozen=True, slots=True)
class IndexChange:
    """The identity's state after the batch; state None removes it (back to ABSENT)."""

    window_id: str
    identity: str
    payload_hash: str
    state: IdentityState | None
    offset: int | None


class IdentityIndex(Protocol):
    def lookup_identities(self, window_id: str, identities: Iterable[str]) -> dict[str, Known]: ...

    def count_identities(self, window_id: str) -> dict[str, int]: ...


def _known(payload_hash: str, state: str, offset: int | None) -> Known:
    return Known(IdentityState(state), payload_hash, offset)


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    index_table = "identity_index"

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {self.index_table} ("
            "window_id TEXT NOT NULL, identity TEXT NOT NULL, payload_hash TEXT NOT NULL, "
            "state TEXT NOT NULL, bus_offset INTEGER, "
            "PRIMARY KEY (window_id, identity)) WITHOUT ROWID"
        )
        return statements

    def _insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        *,
        index_changes: Sequence[IndexChange] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs)
        upserts = [
            (ch.window_id, ch.identity, ch.payload_hash, ch.state.value, ch.offset)
            for ch in index_changes
            if ch.state is not None
        ]
        if upserts:
            c.executemany(
                f"INSERT INTO {self.index_table} VALUES (?,?,?,?,?) "
                "ON CONFLICT (window_id, identity) DO UPDATE SET "
                "payload_hash=excluded.payload_hash, state=excluded.state, "
                "bus_offset=excluded.bus_offset",
                upserts,
            )
        deletes = [(ch.window_id, ch.identity) for ch in index_changes if ch.state is None]
        if deletes:
            c.executemany(
                f"DELETE FROM {self.index_table} WHERE window_id=? AND identity=?", deletes
            )
        return ids

    def lookup_identities(self, window_id: str, identities: Iterable[str]) -> dict[str, Known]:
        wanted = list(dict.fromkeys(identities))
        found: dict[str, Known] = {}
        with self.datastore.transaction(commit=False) as c:
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                chunk = wanted[start : start + LOOKUP_CHUNK]
                c.execute(
                    f"SELECT identity, payload_hash, state, bus_offset FROM {self.index_table} "
                    f"WHERE window_id=? AND identity IN ({','.join('?' * len(chunk))})",
                    [window_id, *chunk],
                )
                for row in c.fetchall():
                    found[row[0]] = _known(row[1], row[2], row[3])
        return found

    def count_identities(self, window_id: str) -> dict[str, int]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT state, COUNT(*) FROM {self.index_table} WHERE window_id=? GROUP BY state",
                (window_id,),
            )
            return {row[0]: row[1] for row in c.fetchall()}


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        if self.datastore.enable_db_functions:
            # The library's database-function insert path skips _insert_stored_events, where
            # the index is written: refuse rather than silently stop indexing.
            raise ValueError("POSTGRES_ENABLE_DB_FUNCTIONS is not supported by the ledger")
        prefix = events_table_name.removesuffix("_events")
        self.index_table = f"{prefix}_identity_index"
        self.check_identifier_length(self.index_table)
        table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(self.index_table))
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {table} ("
                "window_id text NOT NULL, identity text NOT NULL, payload_hash text NOT NULL, "
                "state text NOT NULL, bus_offset bigint, "
                "PRIMARY KEY (window_id, identity))"
            ).format(table=table)
        )
        self._upsert = SQL(
            "INSERT INTO {table} (window_id, identity, payload_hash, state, bus_offset) "
            "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[]) "
            "ON CONFLICT (window_id, identity) DO UPDATE SET "
            "payload_hash=EXCLUDED.payload_hash, state=EXCLUDED.state, "
            "bus_offset=EXCLUDED.bus_offset"
        ).format(table=table)
        self._delete = SQL(
            "DELETE FROM {table} WHERE window_id = %b AND identity = ANY(%b)"
        ).format(table=table)
        self._lookup = SQL(
            "SELECT identity, payload_hash, state, bus_offset FROM {table} "
            "WHERE window_id = %b AND identity = ANY(%b)"
        ).format(table=table)
        # Typed arrays sent in binary (%b) instead of the library's composite-type array,
        # which psycopg dumps as escaped text (a quarter of the write path's time).
        self._insert_events_unnest = SQL(
            "INSERT INTO {events} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(
            events=SQL("{}.{}").format(
                Identifier(self.datastore.schema), Identifier(self.events_table_name)
            )
        )
        self._count = SQL(
            "SELECT state, COUNT(*) AS n FROM {table} WHERE window_id = %s GROUP BY state"
        ).format(table=table)

    def _insert_stored_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        *,
        index_changes: Sequence[IndexChange] = (),
        **kwargs: Any,
    ) -> None:
        # Take the table lock before touching the index, so that every writer queues on the
        # same lock first and two transactions can never deadlock on index rows.
        self._lock_table(curs)
        self._notify_channel(curs)
        upserts = [ch for ch in index_changes if ch.state is not None]
        deletes = [ch for ch in index_changes if ch.state is None]
        with curs.connection.cursor() as index_curs:
            if upserts:
                index_curs.execute(
                    self._upsert,
                    (
                        [ch.window_id for ch in upserts],
                        [ch.identity for ch in upserts],
                        [ch.payload_hash for ch in upserts],
                        [ch.state.value for ch in upserts if ch.state is not None],
                        [ch.offset for ch in upserts],
                    ),
                )
            for window_id in {ch.window_id for ch in deletes}:
                index_curs.execute(
                    self._delete,
                    (window_id, [ch.identity for ch in deletes if ch.window_id == window_id]),
                )
        # The events insert goes last on `curs`: the caller reads its RETURNING rows.
        curs.execute(
            self._insert_events_unnest,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
        )

    def lookup_identities(self, window_id: str, identities: Iterable[str]) -> dict[str, Known]:
        wanted = list(dict.fromkeys(identities))
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._lookup, (window_id, wanted), prepare=True)
            return {
                row["identity"]: _known(row["payload_hash"], row["state"], row["bus_offset"])
                for row in curs.fetchall()
            }

    def count_identities(self, window_id: str) -> dict[str, int]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._count, (window_id,))
            return {row["state"]: row["n"] for row in curs.fetchall()}
