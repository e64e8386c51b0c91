"""Which chunks the PostgreSQL writer holds back to send together (ADR 0038): only small ones
whose index changes are all new rows; a batch's streamed chunks still go one at a time."""

from __future__ import annotations

from uuid import uuid4

from eventsourcing.persistence import StoredEvent

from ledger.infrastructure.pgchunks import HOLD_BELOW_EVENTS, HeldChunks
from ledger.ports import IndexChange
from ledger.verdicts import IdentityState


def events(n: int) -> list[StoredEvent]:
    window = uuid4()
    return [StoredEvent(window, v, "topic", b"{}") for v in range(1, n + 1)]


def change(new: bool = True, state: IdentityState | None = IdentityState.ADMITTED) -> IndexChange:
    return IndexChange("w", "ab" * 32, "hash", state, 1, new=new)


def test_small_chunks_of_new_rows_are_held_in_the_order_they_were_made() -> None:
    held = HeldChunks()
    a, b = events(1), events(HOLD_BELOW_EVENTS - 1)
    assert held.hold(a, [change()])
    assert held.hold(b, [])  # a repeat absorbed: an event, no index change
    assert held.take() == [(a, [change()]), (b, [])]
    assert held.take() == []


def test_a_streamed_chunk_an_upsert_a_removal_or_no_event_is_not_held() -> None:
    held = HeldChunks()
    assert not held.hold(events(HOLD_BELOW_EVENTS), [change()])
    assert not held.hold(events(1), [change(new=False)])  # a quarantine updates its row
    assert not held.hold(events(1), [change(state=None)])  # back to absent: a delete
    assert not held.hold([], [change()])
    assert held.take() == []
