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


def _known(row: DictRow) -> Known:
    return Known(IdentityState(row["state"]), row["payload_hash"], row["bus_offset"])


def _known_rows(rows: Iterable[DictRow]) -> dict[str, Known]:
    return {row["identity"].hex(): _known(row) for row in rows}


class IdentityReads:
    """Mixed into `LedgerPostgresRecorder`, which defines the statements and connections."""

    _newer_events: QueryNoTemplate
    _lookup: QueryNoTemplate
    _lookup_any_window: QueryNoTemplate
    _connection: Callable[[], AbstractContextManager[Connection[DictRow]]]

    def catch_up_and_look_up_many(
        self, lookups: Sequence[Lookup], meanwhile: Callable[[], None] = lambda: None
    ) -> list[tuple[Sequence[StoredEvent], dict[str, Known]]]:
        with self._connection() as conn:
            pending = PendingReads()
            try:
                # Autocommit: each statement reads the latest commits; the index after every
                # window's events. All of them in one pipeline: one round trip.
                with conn.pipeline():
                    self.send_reads(conn, lookups, pending)
                    meanwhile()  # Python work that needs no answer, while the server looks up
                return pending.fetch()
            finally:
                pending.close()

    def send_reads(
        self, conn: Connection[DictRow], lookups: Sequence[Lookup], pending: PendingReads
    ) -> None:
        """Queue each window's newer events, then one lookup of every window's identities
        (an identity is a hash over its window's id: no two windows share one), on `conn` (in
        a pipeline); `pending.fetch()` answers once the pipeline has been synced."""
        for lookup in lookups:
            events = conn.cursor()
            pending.events.append((lookup, events))
            events.execute(
                self._newer_events, (lookup.originator_id, lookup.after_version), prepare=True
            )
        wanted = identity_keys(dict.fromkeys(i for lookup in lookups for i in lookup.identities))
        if wanted.items:
            pending.index = conn.cursor()
            pending.index.execute(self._lookup_any_window, (wanted,), prepare=False)

    def lookup_identities(self, window_id: str, identities: Iterable[str]) -> dict[str, Known]:
        with self._connection() as conn, conn.cursor() as curs:
            wanted = identity_keys(dict.fromkeys(identities))
            curs.execute(self._lookup, (wanted, window_id), prepare=False)
            return _known_rows(curs.fetchall())


class PendingReads:
    """The cursors of reads sent down a pipeline, answered once it has been synced."""

    __slots__ = ("events", "index")

    def __init__(self) -> None:
        self.events: list[tuple[Lookup, Cursor[DictRow]]] = []
        self.index: Cursor[DictRow] | None = None

    def fetch(self) -> list[tuple[Sequence[StoredEvent], dict[str, Known]]]:
        """Each lookup's newer events and its identities' states, in the lookups' order."""
        known: dict[str, dict[str, Known]] = {}
        for row in self.index.fetchall() if self.index is not None else ():
            known.setdefault(row["window_id"], {})[row["identity"].hex()] = _known(row)
        return [
            (
                list(_stored(lookup.originator_id, events.fetchall())),
                known.get(lookup.window_id, {}),
            )
            for lookup, events in self.events
        ]

    def close(self) -> None:
        for _, events in self.events:
            events.close()
        if self.index is not None:
            self.index.close()


def _stored(originator_id: UUID, rows: Iterable[Any]) -> Iterator[StoredEvent]:
    for row in rows:
        yield StoredEvent(
            originator_id=originator_id,
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )
