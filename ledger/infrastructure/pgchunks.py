"""Small chunks of several windows written in one statement (ADR 0038).

A group of single-event requests over several windows makes one small chunk a window: its
events and its new index rows. Each was one statement, so the group's transaction cost about
one round of psycopg's per-statement work (and the server's) a window. The writer holds such
chunks back and sends them together: one INSERT of every held index row and one of every held
event, in the order they were made. A chunk of 16 events or more (a batch's streamed chunk) is
not held: it goes at once, so the server writes it while Python makes the next (ADR 0011).
"""

from __future__ import annotations

from collections.abc import Sequence

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Composable, Composed

from ledger.infrastructure.pgarrays import ByteaArray, Int8Array, TextArray
from ledger.ports import IndexChange

HOLD_BELOW_EVENTS = 16

Held = tuple[Sequence[StoredEvent], Sequence[IndexChange]]


def insert_chunks_statement(index: Composable, events: Composable) -> Composed:
    """New index rows of any windows and events of any windows, in one statement."""
    return SQL(
        "WITH new_rows AS ("
        "INSERT INTO {index} (window_id, identity, payload_hash, state, bus_offset) "
        "SELECT * FROM unnest(%b::text[], %b::bytea[], %b::text[], %b::text[], %b::bigint[])) "
        "INSERT INTO {events} (originator_id, originator_version, topic, state) "
        "SELECT o::uuid, v, t, s FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::bytea[]) "
        "AS c(o, v, t, s)"
    ).format(index=index, events=events)


class HeldChunks:
    """The small chunks not sent yet, in the order they were made."""

    __slots__ = ("chunks",)

    def __init__(self) -> None:
        self.chunks: list[Held] = []

    def hold(self, events: Sequence[StoredEvent], changes: Sequence[IndexChange]) -> bool:
        """Keep a small chunk of events whose index changes are all new rows; False for any
        other chunk (sent on its own, after what is held)."""
        if not events or len(events) >= HOLD_BELOW_EVENTS:
            return False
        if not all(ch.new and ch.state is not None for ch in changes):
            return False
        self.chunks.append((events, changes))
        return True

    def take(self) -> list[Held]:
        taken, self.chunks = self.chunks, []
        return taken


def insert_chunks_parameters(chunks: Sequence[Held]) -> tuple[object, ...]:
    changes = [ch for _, held in chunks for ch in held]
    events = [e for held, _ in chunks for e in held]
    return (
        TextArray([ch.window_id for ch in changes]),
        ByteaArray([bytes.fromhex(ch.identity) for ch in changes]),
        TextArray([ch.payload_hash for ch in changes]),
        TextArray([ch.state.value for ch in changes if ch.state is not None]),
        Int8Array([ch.offset for ch in changes]),
        TextArray([str(e.originator_id) for e in events]),
        Int8Array([e.originator_version for e in events]),
        TextArray([e.topic for e in events]),
        ByteaArray([e.state for e in events]),
    )
