"""The SQLite application recorder that also writes the identity index in the events'
transaction: `Application.save(window, index_changes=[...])` passes the rows down to
`_insert_events`, the library's extension point for rows written beside the events.

Event ids (the notification ids the read side follows) are never handed out twice. The
library's events table takes them from SQLite's rowid, which gives the next insert the id of a
deleted newest row: a follower already past that id would never see the new event. Here the
table declares its id `INTEGER PRIMARY KEY AUTOINCREMENT` (SQLite then remembers the highest id
ever used, in `sqlite_sequence`), and a database made with the library's table is carried over
once at start. The id column is named `rowid`, so the library's own statements (`SELECT rowid,
*`, `MAX(rowid)`) read it unchanged.

PostgreSQL needs none of this: the library's events table takes `notification_id` from a
sequence (`bigserial`), and a sequence never hands out a value twice: a deleted row or a
rolled-back insert leaves a gap, never a reused id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from ledger.infrastructure.logpages import SQLiteLogPages
from ledger.ports import Chunk, IndexChange, LockedRead, Lookup, WindowSnapshot
from ledger.verdicts import IdentityState, Known

LOOKUP_CHUNK = 500


class LedgerSQLiteRecorder(SQLiteApplicationRecorder, SQLiteLogPages):
    index_table = "identity_index"
    snapshot_table = "window_snapshots"  # each window's latest snapshot (ADR 0017)

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        # The table has a fifth column, the id: name the four an insert gives.
        self.insert_events_statement = (
            f"INSERT INTO {self.events_table_name} "
            "(originator_id, originator_version, topic, state) VALUES (?,?,?,?)"
        )

    def events_table_statement(self, table: str) -> str:
        """The library's events table, with an id SQLite never reuses (see the module)."""
        return (
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "rowid INTEGER PRIMARY KEY AUTOINCREMENT, "
            "originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, "
            "UNIQUE (originator_id, originator_version))"
        )

    def construct_create_table_statements(self) -> list[str]:
        statements = [self.events_table_statement(self.events_table_name)]
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {self.index_table} ("
            "window_id TEXT NOT NULL, identity TEXT NOT NULL, payload_hash TEXT NOT NULL, "
            "state TEXT NOT NULL, bus_offset INTEGER, "
            "PRIMARY KEY (window_id, identity)) WITHOUT ROWID"
        )
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {self.snapshot_table} ("
            "originator_id TEXT PRIMARY KEY, originator_version INTEGER NOT NULL, "
            "state BLOB NOT NULL)"
        )
        return statements

    def create_table(self) -> None:
        if self._reuses_ids(self._events_table_sql()):
            self._carry_over_events_table()
        super().create_table()

    @staticmethod
    def _reuses_ids(sql: str | None) -> bool:
        """Whether an events table (its CREATE statement; None: there is none) is the library's,
        whose ids SQLite hands out again."""
        return sql is not None and "AUTOINCREMENT" not in sql.upper()

    def _events_table_sql(self, c: SQLiteCursor | None = None) -> str | None:
        """The events table's CREATE statement (None: there is none yet)."""
        if c is None:
            with self.datastore.transaction(commit=False) as own:
                return self._events_table_sql(own)
        c.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
            (self.events_table_name,),
        )
        found = c.fetchone()
        return None if found is None else str(found[0])

    def _carry_over_events_table(self) -> None:
        """Recreate the library's events table with AUTOINCREMENT, keeping every row and its
        id, in one transaction. BEGIN IMMEDIATE takes the write lock before the table is looked
        at again: of two processes starting at once, the second waits, then finds it done."""
        with self.datastore.get_connection(commit=True) as connection:
            c = connection.cursor()
            c.execute("BEGIN IMMEDIATE")
            try:
                if self._reuses_ids(self._events_table_sql(c)):
                    self._copy_events_table(c)
            except BaseException:
                connection.rollback()
                raise
            connection.commit()

    def _copy_events_table(self, c: SQLiteCursor) -> None:
        table = self.events_table_name
        old = f"{table}__reused_ids"
        c.execute(f"ALTER TABLE {table} RENAME TO {old}")
        c.execute(self.events_table_statement(table))
        columns = "rowid, originator_id, originator_version, topic, state"
        c.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {old} ORDER BY rowid")
        c.execute(f"DROP TABLE {old}")
        # The next id follows the highest one kept. (An id the old table had handed out and
        # lost with a deleted newest row is beyond anyone's memory.)
        c.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
        c.execute(
            "INSERT INTO sqlite_sequence (name, seq) "
            f"SELECT ?, COALESCE(MAX(rowid), 0) FROM {table}",
            (table,),
        )

    def _insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        *,
        index_changes: Sequence[IndexChange] = (),
        snapshot: WindowSnapshot | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs)
        if snapshot is not None:
            c.execute(
                f"INSERT INTO {self.snapshot_table} VALUES (?,?,?) "
                "ON CONFLICT (originator_id) DO UPDATE SET "
                "originator_version=excluded.originator_version, state=excluded.state "
                f"WHERE {self.snapshot_table}.originator_version < excluded.originator_version",
                (snapshot.originator_id.hex, snapshot.version, snapshot.state),
            )
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

    def insert_event_stream(
        self, chunks: Iterable[Chunk], lock_first: bool = False, read: LockedRead | None = None
    ) -> None:
        # SQLite is in-process: nothing to overlap with, so it is one ordinary insert. Its
        # writers are the threads of one process, already serialized per window, so
        # `lock_first` needs nothing more here (another process's write is still a conflict),
        # and the reads "under the lock" are ordinary reads.
        if read is not None:
            read.found = self.catch_up_and_look_up_many(read.lookups)
        stored_events: list[StoredEvent] = []
        changes: dict[str, IndexChange] = {}
        snapshot: WindowSnapshot | None = None
        for events, chunk_changes, chunk_snapshot in chunks:
            stored_events.extend(events)
            changes.update((ch.identity, ch) for ch in chunk_changes)
            snapshot = chunk_snapshot or snapshot
        self.insert_events(stored_events, index_changes=list(changes.values()), snapshot=snapshot)

    def latest_snapshot(self, originator_id: UUID) -> WindowSnapshot | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT originator_version, state FROM {self.snapshot_table} "
                "WHERE originator_id=?",
                (originator_id.hex,),
            )
            row = c.fetchone()
        return None if row is None else WindowSnapshot(originator_id, row[0], bytes(row[1]))

    def discard_snapshot(self, originator_id: UUID, version: int) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"DELETE FROM {self.snapshot_table} WHERE originator_id=? AND originator_version=?",
                (originator_id.hex, version),
            )

    def catch_up_and_look_up_many(
        self, lookups: Sequence[Lookup], meanwhile: Callable[[], None] = lambda: None
    ) -> list[tuple[Sequence[StoredEvent], dict[str, Known]]]:
        meanwhile()  # no round trips to overlap with: a file
        return [
            (
                self.select_events(lookup.originator_id, gt=lookup.after_version),
                self.lookup_identities(lookup.window_id, lookup.identities),
            )
            for lookup in lookups
        ]

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
                    found[row[0]] = Known(IdentityState(row[2]), row[1], row[3])
        return found

    def count_identities(self, window_id: str) -> dict[str, int]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT state, COUNT(*) FROM {self.index_table} WHERE window_id=? GROUP BY state",
                (window_id,),
            )
            return {row[0]: row[1] for row in c.fetchall()}
