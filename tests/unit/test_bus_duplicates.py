"""An operator's acceptance of an extra bus message, in the domain alone (ADR 0028): the event,
its place in the chain, the counter close and snapshots carry, and the Markdown receipt."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.application import project_aggregate

from ledger.domain import Window, chain_digest, format_recorded_at
from ledger.domain.snapshot import copy_window, snapshot_state, window_from_snapshot
from ledger.errors import WindowClosed
from ledger.receipts import BUS_DUPLICATES_LABEL, receipt_json, render_markdown

H = "a" * 64
IDENTITY = "1" * 64


def admitted_window() -> Window:
    w = Window.open("w.extra")
    w.admit(
        identity=IDENTITY,
        event_type="t",
        event_id="e1",
        payload={"id": "e1"},
        payload_hash=H,
        offset=7,
        source=None,
    )
    return w


def accept(w: Window, sequence: int = 3, offset: int = 7) -> None:
    w.accept_bus_duplicate(
        identity=IDENTITY,
        sequence=sequence,
        offset=offset,
        payload_hash=H,
        accepted_by="ops-alice",
        reason="bus duplicate window ended",
    )


def fields_of(event: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(event).items()
        if k not in {"originator_id", "originator_version", "timestamp", "prev_digest", "digest"}
    }


def test_an_accepted_extra_message_is_an_event_of_the_chain_with_its_evidence() -> None:
    w = admitted_window()
    head_before = w.chain_head
    accept(w)
    events = w.collect_events()
    accepted = events[-1]
    assert type(accepted).__name__ == "BusDuplicateAccepted"
    assert fields_of(accepted) == {
        "identity": IDENTITY,
        "sequence": 3,
        "offset": 7,
        "payload_hash": H,
        "accepted_by": "ops-alice",
        "reason": "bus duplicate window ended",
    }
    assert accepted.prev_digest == head_before
    assert accepted.digest == chain_digest(
        head_before,
        3,
        "BusDuplicateAccepted",
        format_recorded_at(accepted.timestamp),
        fields_of(accepted),
    )
    assert w.chain_head == accepted.digest
    assert w.bus_duplicates_accepted == 1
    # Counted apart: the contract's counts are unchanged.
    assert w.counts()["admitted"] == 1
    assert "bus_duplicates_accepted" not in w.counts()


def test_replaying_the_history_counts_the_accepted_extras() -> None:
    w = admitted_window()
    accept(w, 3)
    accept(w, 4)
    replayed = project_aggregate(None, w.collect_events())
    assert replayed == w
    assert replayed is not None and replayed.bus_duplicates_accepted == 2


def test_the_closing_summary_names_the_accepted_extras_only_when_there_are_some() -> None:
    plain = admitted_window()
    plain.close()
    assert plain.summary is not None and "bus_duplicates_accepted" not in plain.summary
    w = admitted_window()
    accept(w)
    w.close()
    assert w.summary is not None and w.summary["bus_duplicates_accepted"] == 1
    assert w.summary["counts"]["admitted"] == 1


def test_accepting_on_a_closed_window_is_refused_and_records_nothing() -> None:
    w = admitted_window()
    w.close()
    version = w.version
    with pytest.raises(WindowClosed):
        accept(w)
    assert (w.version, w.bus_duplicates_accepted) == (version, 0)


def test_the_admitted_message_itself_is_never_accepted_as_an_extra_one() -> None:
    w = admitted_window()
    with pytest.raises(ValueError):
        accept(w, sequence=7, offset=7)
    assert w.bus_duplicates_accepted == 0


def test_a_snapshot_carries_the_counter_and_an_older_one_without_it_loads_as_zero() -> None:
    w = admitted_window()
    accept(w)
    state = snapshot_state(w)
    assert state["bus_duplicates_accepted"] == 1
    assert window_from_snapshot(state).bus_duplicates_accepted == 1
    assert copy_window(w).bus_duplicates_accepted == 1
    older = {k: v for k, v in state.items() if k != "bus_duplicates_accepted"}
    loaded = window_from_snapshot(older)
    assert loaded.bus_duplicates_accepted == 0
    accept(loaded, sequence=5)  # the counter moves on from a snapshot that lacked it
    assert loaded.bus_duplicates_accepted == 1


def test_the_markdown_receipt_shows_the_accepted_extras_only_when_there_are_some() -> None:
    w = admitted_window()
    receipt = receipt_json(
        window_id=w.window_id,
        status=w.status,
        gate="OPEN",
        counts=w.counts(),
        bus_offsets=w.bus_offset_range(),
        source_offsets=w.source_offset_ranges(),
        opened_at=w.opened_at,
        closed_at=None,
        events=w.version,
        chain_head=w.chain_head,
    )
    assert BUS_DUPLICATES_LABEL not in render_markdown(receipt)
    assert f"| {BUS_DUPLICATES_LABEL} | 2 |" in render_markdown(receipt, None, 2)
