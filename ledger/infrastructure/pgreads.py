"""The PostgreSQL recorder's reads of the identity index with a window's newer events: one
round trip for a window, or for all the windows of a group (ADR 0020), sent straight through
libpq (ADR 0049)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg import Connection
from psycopg import errors as pg_errors
from psycopg.abc import QueryNoTemplate
from psycopg.pq.abc import PGresult
from psycopg.rows import DictRow

from ledger.infrastructure.pgarrays import ByteaArray
from ledger.infrastructure.pgwire import Wire, int8
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

    _newer_events: bytes
    _lookup: QueryNoTemplate
    _lookup_any_window: bytes
    _connection: Callable[[], AbstractContextManager[Connection[DictRow]]]

    def catch_up_and_look_up_many(
        self, lookups: Sequence[Lookup], meanwhile: Callable[[], None] = lambda: None
    ) -> list[tuple[Sequence[StoredEvent], dict[str, Known]]]:
        with self._connection() as conn:
            # Autocommit: each statement reads the latest commits; the index after every
            # window's events. All of them in one pipeline: one round trip.
            try:
                return self._read(conn, lookups, meanwhile)
            except pg_errors.InvalidSqlStatementName:
                # The connection's statements were deallocated (pgwire): prepared anew.
                return self._read(conn, lookups)

    def _read(
        self,
        conn: Connection[DictRow],
        lookups: Sequence[Lookup],
        meanwhile: Callable[[], None] = lambda: None,
    ) -> list[tuple[Sequence[StoredEvent], dict[str, Known]]]:
        with Wire(conn) as wire:
            pending = PendingReads()
            self.send_reads(wire, lookups, pending)
            wire.flush()
            meanwhile()  # Python work that needs no answer, while the server looks up
            return pending.fetch(wire.sync())

    def send_reads(self, wire: Wire, lookups: Sequence[Lookup], pending: PendingReads) -> None:
        """Queue each window's newer events, then one lookup of every window's identities
        (an identity is a hash over its window's id: no two windows share one), down `wire`;
        `pending.fetch(results)` answers from what the sync after them returns."""
        for lookup in lookups:
            pending.events.append(
                (
                    lookup,
                    wire.execute(self._newer_events, (lookup.originator_id, lookup.after_version)),
                )
            )
        wanted = identity_keys(dict.fromkeys(i for lookup in lookups for i in lookup.identities))
        if wanted.items:
            # Planned on each execution (ADR 0021).
            pending.index = wire.execute(self._lookup_any_window, (wanted,), prepare=False)

    def lookup_identities(self, window_id: str, identities: Iterable[str]) -> dict[str, Known]:
        with self._connection() as conn, conn.cursor() as curs:
            wanted = identity_keys(dict.fromkeys(identities))
            curs.execute(self._lookup, (wanted, window_id), prepare=False)
            return _known_rows(curs.fetchall())


class PendingReads:
    """Where the answers of reads sent down a pipeline will be in its sync's results."""

    __slots__ = ("events", "index")

    def __init__(self) -> None:
        self.events: list[tuple[Lookup, int]] = []
        self.index: int | None = None

    def fetch(
        self, results: Sequence[PGresult]
    ) -> list[tuple[Sequence[StoredEvent], dict[str, Known]]]:
        """Each lookup's newer events and its identities' states, in the lookups' order."""
        known: dict[str, dict[str, Known]] = {}
        if self.index is not None:
            found = results[self.index]
            value = found.get_value
            for row in range(found.ntuples):
                identity, window_id, payload_hash, state = (value(row, c) or b"" for c in range(4))
                known.setdefault(window_id.decode(), {})[identity.hex()] = Known(
                    IdentityState(state.decode()), payload_hash.decode(), int8(value(row, 4))
                )
        return [
            (list(_stored(lookup.originator_id, results[at])), known.get(lookup.window_id, {}))
            for lookup, at in self.events
        ]


def _stored(originator_id: UUID, rows: PGresult) -> Iterator[StoredEvent]:
    value = rows.get_value
    for row in range(rows.ntuples):
        yield StoredEvent(
            originator_id=originator_id,
            originator_version=int8(value(row, 0)) or 0,
            topic=(value(row, 1) or b"").decode(),
            state=value(row, 2) or b"",
        )
