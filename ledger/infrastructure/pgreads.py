"""The PostgreSQL recorder's reads of the identity index with a window's newer events: one
round trip for a window, or for all the windows of a group (ADR 0020)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg import Connection, Cursor
from psycopg.abc import QueryNoTemplate
from psycopg.rows import DictRow

from ledger.infrastructure.pgarrays import ByteaArray
from ledger.ports import Lookup
from ledger.verdicts import IdentityState, Known


def identity_keys(identities: Iterable[str]) -> ByteaArray:
    """Identities as the PostgreSQL index keys them: their 32 bytes (ADR 0011). Anything that
    is not 64 hex digits cannot be in the index: it is looked up as a key nothing matches."""
    keys = []
    for identity in identities:
        try:
            keys.append(bytes.fromhex(identity))
        except ValueError:
            keys.append(b"")
    return ByteaArray(keys)


def _known_rows(rows: Iterable[DictRow]) -> dict[str, Known]:
    return {
        row["identity"].hex(): Known(
            IdentityState(row["state"]), row["payload_hash"], row["bus_offset"]
        )
        for row in rows
    }


class IdentityReads:
    """Mixed into `LedgerPostgresRecorder`, which defines the statements and connections."""

    _newer_events: QueryNoTemplate
    _lookup: QueryNoTemplate
    _connection: Callable[[], AbstractContextManager[Connection[DictRow]]]

    def catch_up_and_look_up_many(
        self, lookups: Sequence[Lookup], meanwhile: Callable[[], None] = lambda: None
    ) -> list[tuple[Sequence[StoredEvent], dict[str, Known]]]:
        with self._connection() as conn:
            cursors: list[tuple[UUID, Cursor[DictRow], Cursor[DictRow]]] = []
            try:
                # Autocommit: each statement reads the latest commits; each window's index
                # after its events. All of them in one pipeline: one round trip.
                with conn.pipeline():
                    self.send_reads(conn, lookups, cursors)
                    meanwhile()  # Python work that needs no answer, while the server looks up
                return fetch_reads(cursors)
            finally:
                close_reads(cursors)

    def send_reads(
        self,
        conn: Connection[DictRow],
        lookups: Sequence[Lookup],
        cursors: list[tuple[UUID, Cursor[DictRow], Cursor[DictRow]]],
    ) -> None:
        """Queue each lookup's two reads on `conn` (in a pipeline); their cursors go to
        `cursors`, for `fetch_reads` once the pipeline has been synced."""
        for lookup in lookups:
            events, index = conn.cursor(), conn.cursor()
            cursors.append((lookup.originator_id, events, index))
            events.execute(
                self._newer_events, (lookup.originator_id, lookup.after_version), prepare=True
            )
            wanted = identity_keys(dict.fromkeys(lookup.identities))
            index.execute(self._lookup, (wanted, lookup.window_id), prepare=False)

    def lookup_identities(self, window_id: str, identities: Iterable[str]) -> dict[str, Known]:
        with self._connection() as conn, conn.cursor() as curs:
            wanted = identity_keys(dict.fromkeys(identities))
            curs.execute(self._lookup, (wanted, window_id), prepare=False)
            return _known_rows(curs.fetchall())


def fetch_reads(
    cursors: Sequence[tuple[UUID, Cursor[DictRow], Cursor[DictRow]]],
) -> list[tuple[Sequence[StoredEvent], dict[str, Known]]]:
    return [
        (list(_stored(originator_id, events.fetchall())), _known_rows(index.fetchall()))
        for originator_id, events, index in cursors
    ]


def close_reads(cursors: Sequence[tuple[UUID, Cursor[DictRow], Cursor[DictRow]]]) -> None:
    for _, events, index in cursors:
        events.close()
        index.close()


def _stored(originator_id: UUID, rows: Iterable[Any]) -> Iterator[StoredEvent]:
    for row in rows:
        yield StoredEvent(
            originator_id=originator_id,
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )
