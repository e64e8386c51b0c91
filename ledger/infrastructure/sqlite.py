"""The SQLite application recorder that also writes the identity index in the events'
transaction: `Application.save(window, index_changes=[...])` passes the rows down to
`_insert_events`, the library's extension point for rows written beside the events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from ledger.ports import Chunk, IndexChange
from ledger.verdicts import IdentityState, Known

LOOKUP_CHUNK = 500


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

    def insert_event_stream(self, chunks: Iterable[Chunk]) -> None:
        # SQLite is in-process: nothing to overlap with, so it is one ordinary insert.
        stored_events: list[StoredEvent] = []
        changes: dict[str, IndexChange] = {}
        for events, chunk_changes in chunks:
            stored_events.extend(events)
            changes.update((ch.identity, ch) for ch in chunk_changes)
        self.insert_events(stored_events, index_changes=list(changes.values()))

    def catch_up_and_look_up(
        self,
        originator_id: UUID,
        after_version: int,
        window_id: str,
        identities: Iterable[str],
        meanwhile: Callable[[], None] = lambda: None,
    ) -> tuple[Sequence[StoredEvent], dict[str, Known]]:
        meanwhile()
        newer = self.select_events(originator_id, gt=after_version)
        return newer, self.lookup_identities(window_id, identities)

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
