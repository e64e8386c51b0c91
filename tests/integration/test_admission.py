"""The write side end to end, on SQLite and on PostgreSQL (contract sections 1-5).

Every test takes the `ledger` or `make_ledger` fixture, so it runs once per backend.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import rfc8785

from api.errors import status_of
from ledger.admissions import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_BATCH,
    AdmissionIn,
    PreparedOnUse,
    SourceIn,
    prepare,
)
from ledger.application import AdmissionResult, Ledger
from ledger.errors import (
    InvalidAdmission,
    PayloadTooLarge,
    PublishRefused,
    PublishUnknownPending,
    WindowClosed,
    WindowNotFound,
)
from ledger.verdicts import IdentityState, Verdict
from tests.support.builders import TYPE, batch, event
from tests.support.builders import identity as ident
from tests.support.bus import ScriptedBus
from tests.support.client import client_digest, client_payload_hash, recompute_chain
from tests.support.storage import edit_stored_fields

MakeLedger = Callable[..., Ledger]


# --- helpers ------------------------------------------------------------------------------


def verdicts(results: list[AdmissionResult]) -> list[tuple[str, int | None]]:
    return [(r.verdict.value, r.offset) for r in results]


def types(ledger: Ledger, window_id: str) -> list[str]:
    return [h["type"] for h in ledger.history(window_id)]


def recorded(ledger: Ledger, window_id: str) -> Any:
    """Everything a window has recorded: its history and its identity index rows."""
    try:
        history = ledger.history(window_id)
    except WindowNotFound:
        history = None
    return history, ledger.index.count_identities(window_id)


def assert_window_does_not_exist(ledger: Ledger, window_id: str) -> None:
    with pytest.raises(WindowNotFound):
        ledger.history(window_id)
    with pytest.raises(WindowNotFound):
        ledger.verify(window_id)
    with pytest.raises(WindowNotFound):
        ledger.receipt(window_id)
    assert ledger.index.count_identities(window_id) == {}


def of_type(ledger: Ledger, window_id: str, type_name: str) -> list[dict[str, Any]]:
    return [h["fields"] for h in ledger.history(window_id) if h["type"] == type_name]


def assert_carries(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    """The event carries at least the contract's fields, with these values."""
    assert {key: fields.get(key, "<missing>") for key in expected} == expected


# --- verdict table: ABSENT ----------------------------------------------------------------


def test_a_new_identity_acknowledged_by_the_embedded_bus_is_admitted_at_offset_one(
    ledger: Ledger,
) -> None:
    (result,) = ledger.admit("w", batch("w", event("1", {"amount": 5})))
    assert result.verdict is Verdict.ADMITTED
    assert result.offset == 1
    assert result.as_json() == {
        "event_type": TYPE,
        "event_id": "1",
        "identity": ident("w", "1"),
        "payload_hash": result.payload_hash,
        "verdict": "ADMITTED",
        "offset": 1,
    }
    assert types(ledger, "w") == ["WindowOpened", "EventAdmitted"]
    (opened,) = of_type(ledger, "w", "WindowOpened")
    assert_carries(opened, {"window_id": "w"})
    (admitted,) = of_type(ledger, "w", "EventAdmitted")
    assert_carries(
        admitted,
        {
            "identity": ident("w", "1"),
            "event_type": TYPE,
            "event_id": "1",
            "payload": {"amount": 5},
            "payload_hash": result.payload_hash,
            "offset": 1,
            "source": None,
        },
    )


def test_a_new_identity_acknowledged_by_a_real_bus_gets_the_bus_offset(
    make_ledger: MakeLedger,
) -> None:
    bus = ScriptedBus()
    bus.sequence = 41  # the stream already holds other messages
    ledger = make_ledger(bus)
    results = ledger.admit("w", batch("w", event("1"), event("2")))
    assert verdicts(results) == [("ADMITTED", 42), ("ADMITTED", 43)]
    assert bus.stored == {ident("w", "1"): 42, ident("w", "2"): 43}
    assert [f["offset"] for f in of_type(ledger, "w", "EventAdmitted")] == [42, 43]


def test_a_new_identity_whose_publish_times_out_is_recorded_as_publish_unknown(
    make_ledger: MakeLedger,
) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    bus.time_out_and_store.add(ident("w", "1"))
    source = {"partition": "p0", "offset": 7}
    (result,) = ledger.admit("w", batch("w", event("1", {"a": 1}, source=source)))
    assert (result.verdict, result.offset) == (Verdict.PUBLISH_UNKNOWN, None)
    assert types(ledger, "w") == ["WindowOpened", "PublishUnknown"]
    (unknown,) = of_type(ledger, "w", "PublishUnknown")
    assert_carries(
        unknown,
        {
            "identity": ident("w", "1"),
            "event_type": TYPE,
            "event_id": "1",
            "payload": {"a": 1},
            "payload_hash": result.payload_hash,
            "reason": "timeout",
            "source": source,
        },
    )
    known = ledger.index.lookup_identities("w", [ident("w", "1")])
    assert known[ident("w", "1")].state is IdentityState.UNKNOWN
    receipt = ledger.receipt("w")
    assert receipt["counts"]["pending_unknown"] == 1
    assert receipt["counts"]["admitted"] == 0
    assert receipt["gate"] == "BLOCKED"
    assert ledger.gate("w")["status"] == "BLOCKED"


def test_a_refused_publish_raises_and_records_nothing_not_even_window_opened(
    make_ledger: MakeLedger,
) -> None:
    bus = ScriptedBus()
    bus.refuse = True
    ledger = make_ledger(bus)
    with pytest.raises(PublishRefused) as refused:
        ledger.admit("w", batch("w", event("1"), event("2")))
    assert status_of(refused.value) == 503
    assert_window_does_not_exist(ledger, "w")
    # Safe to retry: once the bus is back, the same batch is admitted as if new.
    bus.heal()
    assert verdicts(ledger.admit("w", batch("w", event("1"), event("2")))) == [
        ("ADMITTED", 1),
        ("ADMITTED", 2),
    ]
    assert types(ledger, "w") == ["WindowOpened", "EventAdmitted", "EventAdmitted"]


def test_a_refused_publish_in_an_existing_window_records_nothing_of_the_whole_batch(
    make_ledger: MakeLedger,
) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    ledger.admit("w", batch("w", event("1"), event("2", {"v": 1})))
    before = recorded(ledger, "w")
    bus.refuse = True
    # A duplicate, a mismatch and a new identity: the batch is refused whole.
    with pytest.raises(PublishRefused):
        ledger.admit("w", batch("w", event("1"), event("2", {"v": 2}), event("3")))
    assert recorded(ledger, "w") == before
    assert ledger.receipt("w")["counts"]["duplicates"] == 0
    bus.heal()
    assert verdicts(ledger.admit("w", batch("w", event("3")))) == [("ADMITTED", 3)]


# --- verdict table: ADMITTED --------------------------------------------------------------


def test_an_exact_repeat_is_absorbed_with_the_original_offset(ledger: Ledger) -> None:
    ledger.admit("w", batch("w", event("1"), event("2")))
    (again,) = ledger.admit("w", batch("w", event("2")))
    assert (again.verdict, again.offset) == (Verdict.DUPLICATE, 2)
    assert types(ledger, "w") == [
        "WindowOpened",
        "EventAdmitted",
        "EventAdmitted",
        "DuplicateAbsorbed",
    ]
    (absorbed,) = of_type(ledger, "w", "DuplicateAbsorbed")
    assert_carries(
        absorbed,
        {
            "identity": ident("w", "2"),
            "payload_hash": again.payload_hash,
            "offset": 2,
        },
    )
    assert ledger.receipt("w")["counts"]["duplicates"] == 1


def test_an_admitted_identity_with_a_different_payload_is_quarantined_and_the_original_stays(
    ledger: Ledger,
) -> None:
    (original,) = ledger.admit("w", batch("w", event("1", {"amount": 10})))
    source = {"partition": "p", "offset": 3}
    (changed,) = ledger.admit("w", batch("w", event("1", {"amount": 99}, source=source)))
    assert (changed.verdict, changed.offset) == (Verdict.QUARANTINED, None)
    assert changed.payload_hash != original.payload_hash
    (quarantined,) = of_type(ledger, "w", "MismatchQuarantined")
    assert_carries(
        quarantined,
        {
            "identity": ident("w", "1"),
            "event_type": TYPE,
            "event_id": "1",
            "original_hash": original.payload_hash,
            "received_hash": changed.payload_hash,
            "received_payload": {"amount": 99},
            "source": source,
        },
    )
    # The original stays the truth: its state and offset are unchanged.
    known = ledger.index.lookup_identities("w", [ident("w", "1")])[ident("w", "1")]
    assert (known.state, known.payload_hash, known.offset) == (
        IdentityState.ADMITTED,
        original.payload_hash,
        1,
    )
    assert verdicts(ledger.admit("w", batch("w", event("1", {"amount": 10})))) == [("DUPLICATE", 1)]
    (again,) = ledger.admit("w", batch("w", event("1", {"amount": 99})))
    assert again.verdict is Verdict.QUARANTINED
    assert len(of_type(ledger, "w", "EventAdmitted")) == 1
    assert of_type(ledger, "w", "EventAdmitted")[0]["payload"] == {"amount": 10}
    counts = ledger.receipt("w")["counts"]
    assert (counts["admitted"], counts["quarantined"], counts["duplicates"]) == (1, 2, 1)


# --- verdict table: UNKNOWN ---------------------------------------------------------------


def test_an_unknown_identity_with_a_different_payload_is_quarantined_and_stays_unknown(
    make_ledger: MakeLedger,
) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    bus.time_out_and_drop.add(ident("w", "1"))
    (first,) = ledger.admit("w", batch("w", event("1", {"v": "original"})))
    assert first.verdict is Verdict.PUBLISH_UNKNOWN
    (other,) = ledger.admit("w", batch("w", event("1", {"v": "other"})))
    assert (other.verdict, other.offset) == (Verdict.QUARANTINED, None)
    assert bus.stored == {}  # a mismatch is never sent
    (quarantined,) = of_type(ledger, "w", "MismatchQuarantined")
    assert quarantined["original_hash"] == first.payload_hash
    assert quarantined["received_hash"] == other.payload_hash
    known = ledger.index.lookup_identities("w", [ident("w", "1")])[ident("w", "1")]
    assert (known.state, known.payload_hash) == (IdentityState.UNKNOWN, first.payload_hash)
    assert ledger.receipt("w")["counts"]["pending_unknown"] == 1
    # The original is still the one a re-publish sends.
    bus.heal()
    (healed,) = ledger.admit("w", batch("w", event("1", {"v": "original"})))
    assert (healed.verdict, healed.offset) == (Verdict.ADMITTED, 1)


def test_an_unknown_identity_sent_again_is_republished_and_reconciled_with_the_bus_offset(
    make_ledger: MakeLedger,
) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    ledger.admit("w", batch("w", event("0")))  # bus sequence 1
    bus.time_out_and_store.add(ident("w", "1"))
    (first,) = ledger.admit("w", batch("w", event("1")))  # stored at 2, ack lost
    assert first.verdict is Verdict.PUBLISH_UNKNOWN
    assert bus.stored[ident("w", "1")] == 2
    ledger.admit("w", batch("w", event("2")))  # bus sequence 3
    bus.heal()
    (again,) = ledger.admit("w", batch("w", event("1")))
    # Same message id: the bus deduplicates and answers the first sequence.
    assert (again.verdict, again.offset) == (Verdict.ADMITTED, 2)
    assert bus.sequence == 3
    assert types(ledger, "w")[-1] == "PublishReconciled"
    (reconciled,) = of_type(ledger, "w", "PublishReconciled")
    assert_carries(reconciled, {"identity": ident("w", "1"), "outcome": "published", "offset": 2})
    admitted_identities = [f["identity"] for f in of_type(ledger, "w", "EventAdmitted")]
    assert ident("w", "1") not in admitted_identities
    known = ledger.index.lookup_identities("w", [ident("w", "1")])[ident("w", "1")]
    assert (known.state, known.offset) == (IdentityState.ADMITTED, 2)
    counts = ledger.receipt("w")["counts"]
    assert counts == {
        "admitted": 3,
        "duplicates": 0,
        "quarantined": 0,
        "publish_unknown": 1,
        "reconciled": 1,
        "pending_unknown": 0,
    }
    assert verdicts(ledger.admit("w", batch("w", event("1")))) == [("DUPLICATE", 2)]


def test_an_unknown_identity_whose_message_never_reached_the_bus_gets_a_new_offset(
    make_ledger: MakeLedger,
) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    bus.time_out_and_drop.add(ident("w", "1"))
    ledger.admit("w", batch("w", event("1")))
    assert bus.stored == {}
    bus.heal()
    assert verdicts(ledger.admit("w", batch("w", event("1")))) == [("ADMITTED", 1)]
    assert bus.stored == {ident("w", "1"): 1}
    (reconciled,) = of_type(ledger, "w", "PublishReconciled")
    assert_carries(reconciled, {"identity": ident("w", "1"), "outcome": "published", "offset": 1})


def test_an_unknown_identity_sent_again_while_the_bus_still_times_out_records_nothing_new(
    make_ledger: MakeLedger,
) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    bus.time_out_and_store.add(ident("w", "1"))
    ledger.admit("w", batch("w", event("1")))
    before = recorded(ledger, "w")
    calls = bus.publish_calls
    (again,) = ledger.admit("w", batch("w", event("1")))
    assert (again.verdict, again.offset) == (Verdict.PUBLISH_UNKNOWN, None)
    assert bus.publish_calls == calls + 1  # it was re-published
    assert len(bus.stored) == 1  # with the same message id: still one message
    assert recorded(ledger, "w") == before
    assert len(of_type(ledger, "w", "PublishUnknown")) == 1
    assert ledger.receipt("w")["counts"]["publish_unknown"] == 1


# --- repeats inside one batch -------------------------------------------------------------


def test_a_same_hash_repeat_inside_a_batch_is_a_duplicate_of_the_earlier_item(
    ledger: Ledger,
) -> None:
    results = ledger.admit("w", batch("w", event("1"), event("2"), event("1"), event("2")))
    assert verdicts(results) == [
        ("ADMITTED", 1),
        ("ADMITTED", 2),
        ("DUPLICATE", 1),
        ("DUPLICATE", 2),
    ]
    assert types(ledger, "w") == [
        "WindowOpened",
        "EventAdmitted",
        "EventAdmitted",
        "DuplicateAbsorbed",
        "DuplicateAbsorbed",
    ]
    assert [f["offset"] for f in of_type(ledger, "w", "DuplicateAbsorbed")] == [1, 2]


def test_a_different_hash_repeat_inside_a_batch_is_quarantined_against_the_earlier_item(
    ledger: Ledger,
) -> None:
    results = ledger.admit(
        "w", batch("w", event("1", {"v": 1}), event("1", {"v": 2}), event("1", {"v": 1}))
    )
    assert verdicts(results) == [("ADMITTED", 1), ("QUARANTINED", None), ("DUPLICATE", 1)]
    (quarantined,) = of_type(ledger, "w", "MismatchQuarantined")
    assert quarantined["original_hash"] == results[0].payload_hash
    assert quarantined["received_hash"] == results[1].payload_hash
    assert quarantined["received_payload"] == {"v": 2}
    assert of_type(ledger, "w", "EventAdmitted")[0]["payload"] == {"v": 1}


def test_a_repeat_of_an_item_whose_publish_timed_out_in_the_same_batch_is_publish_unknown_once(
    make_ledger: MakeLedger,
) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    bus.time_out_and_store.add(ident("w", "1"))
    results = ledger.admit(
        "w",
        batch("w", event("1"), event("2"), event("1"), event("1", {"other": True})),
    )
    assert verdicts(results) == [
        ("PUBLISH_UNKNOWN", None),
        ("ADMITTED", 2),
        ("PUBLISH_UNKNOWN", None),
        ("QUARANTINED", None),
    ]
    assert types(ledger, "w") == [
        "WindowOpened",
        "PublishUnknown",
        "EventAdmitted",
        "MismatchQuarantined",
    ]
    assert bus.stored == {ident("w", "1"): 1, ident("w", "2"): 2}
    counts = ledger.receipt("w")["counts"]
    assert (counts["publish_unknown"], counts["pending_unknown"]) == (1, 1)


def test_a_batch_that_repeats_an_unknown_identity_twice_reconciles_once_then_absorbs(
    make_ledger: MakeLedger,
) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    bus.time_out_and_store.add(ident("w", "1"))
    ledger.admit("w", batch("w", event("1")))
    bus.heal()
    results = ledger.admit("w", batch("w", event("1"), event("1")))
    assert verdicts(results) == [("ADMITTED", 1), ("DUPLICATE", 1)]
    assert types(ledger, "w")[-2:] == ["PublishReconciled", "DuplicateAbsorbed"]


def test_results_come_back_in_request_order_with_one_result_per_item(ledger: Ledger) -> None:
    ids = [str(i) for i in (5, 3, 9, 3, 1)]
    results = ledger.admit("w", batch("w", *(event(i) for i in ids)))
    assert [r.event_id for r in results] == ids
    assert [r.identity for r in results] == [ident("w", i) for i in ids]
    assert verdicts(results) == [
        ("ADMITTED", 1),
        ("ADMITTED", 2),
        ("ADMITTED", 3),
        ("DUPLICATE", 2),
        ("ADMITTED", 4),
    ]


# --- replay of a whole window and offsets -------------------------------------------------


def test_replaying_a_whole_window_gives_all_duplicates_with_the_same_offsets(
    ledger: Ledger,
) -> None:
    batches = [
        batch("w", event("1"), event("2"), event("3")),
        batch("w", event("4", {"x": [1, 2]}), event("2"), event("5")),
        batch("w", *(event(str(i)) for i in range(6, 20))),
    ]
    first_run = [ledger.admit("w", b) for b in batches]
    admitted_before = of_type(ledger, "w", "EventAdmitted")
    length_before = len(ledger.history("w"))
    second_run = [ledger.admit("w", b) for b in batches]
    for first, second in zip(first_run, second_run, strict=True):
        assert [r.verdict for r in second] == [Verdict.DUPLICATE] * len(second)
        assert [r.offset for r in second] == [r.offset for r in first]
        assert [r.identity for r in second] == [r.identity for r in first]
    added = ledger.history("w")[length_before:]
    assert {h["type"] for h in added} == {"DuplicateAbsorbed"}
    assert len(added) == sum(len(b) for b in batches)
    assert of_type(ledger, "w", "EventAdmitted") == admitted_before
    assert len(admitted_before) == 19


def test_offsets_are_dense_per_window_and_independent_across_windows(ledger: Ledger) -> None:
    got: dict[str, list[int | None]] = defaultdict(list)
    for round_ in range(4):
        for window_id in ("a", "b", "c"):
            ids = [f"{round_}-{i}" for i in range(round_ + 1)]
            if window_id == "c":
                ids = ids[:1]
            for r in ledger.admit(window_id, batch(window_id, *(event(i) for i in ids))):
                got[window_id].append(r.offset)
    assert got["a"] == list(range(1, 11))
    assert got["b"] == list(range(1, 11))
    assert got["c"] == [1, 2, 3, 4]
    for window_id, n in (("a", 10), ("b", 10), ("c", 4)):
        offsets = [f["offset"] for f in of_type(ledger, window_id, "EventAdmitted")]
        assert offsets == list(range(1, n + 1))
        assert ledger.receipt(window_id)["bus_offsets"] == {"first": 1, "last": n}


def test_the_same_event_in_two_windows_has_two_identities_and_is_admitted_in_each(
    ledger: Ledger,
) -> None:
    (a,) = ledger.admit("a", batch("a", event("1")))
    (b,) = ledger.admit("b", batch("b", event("1")))
    assert a.identity != b.identity
    assert verdicts([a, b]) == [("ADMITTED", 1), ("ADMITTED", 1)]


def test_a_batch_of_the_maximum_size_is_admitted_with_dense_offsets(ledger: Ledger) -> None:
    results = ledger.admit("w", batch("w", *(event(str(i)) for i in range(MAX_BATCH))))
    assert [r.offset for r in results] == list(range(1, MAX_BATCH + 1))
    assert {r.verdict for r in results} == {Verdict.ADMITTED}
    assert ledger.verify("w").events == MAX_BATCH + 1


# --- closing ------------------------------------------------------------------------------


def test_close_returns_the_receipt_with_status_closed_and_gate_pass(ledger: Ledger) -> None:
    ledger.admit("w", batch("w", event("1"), event("2"), event("1")))
    receipt = ledger.close_window("w")
    assert receipt["status"] == "CLOSED"
    assert receipt["gate"] == "PASS"
    assert ledger.gate("w") == {"window_id": "w", "status": "PASS", "reasons": []}
    history = ledger.history("w")
    assert history[-1]["type"] == "WindowClosed"
    assert receipt["events"] == len(history) == 5
    assert receipt["chain_head"] == history[-1]["digest"]
    assert receipt["closed_at"] == history[-1]["recorded_at"]
    summary = history[-1]["fields"]["summary"]
    for key in ("counts", "bus_offsets", "source_offsets", "opened_at", "events"):
        assert summary[key] == receipt[key], key


def test_closing_a_closed_window_again_returns_the_same_receipt_and_records_nothing(
    ledger: Ledger,
) -> None:
    ledger.admit("w", batch("w", event("1")))
    first = ledger.close_window("w")
    before = recorded(ledger, "w")
    second = ledger.close_window("w")
    assert second == first
    assert recorded(ledger, "w") == before
    assert types(ledger, "w").count("WindowClosed") == 1


def test_closing_a_window_that_does_not_exist_raises_window_not_found(ledger: Ledger) -> None:
    with pytest.raises(WindowNotFound):
        ledger.close_window("nothing-here")
    assert_window_does_not_exist(ledger, "nothing-here")


def test_an_exact_duplicate_after_close_is_a_duplicate_and_records_nothing(
    ledger: Ledger,
) -> None:
    ledger.admit("w", batch("w", event("1"), event("2")))
    ledger.close_window("w")
    before = recorded(ledger, "w")
    results = ledger.admit("w", batch("w", event("2"), event("1"), event("2")))
    assert verdicts(results) == [("DUPLICATE", 2), ("DUPLICATE", 1), ("DUPLICATE", 2)]
    assert recorded(ledger, "w") == before
    assert ledger.receipt("w")["gate"] == "PASS"


@pytest.mark.parametrize(
    "late",
    [
        [event("3")],
        [event("1", {"changed": True})],
        [event("1"), event("3")],  # one exact duplicate does not carry the batch
        [event("2"), event("1")],  # "2" was quarantined, never admitted as this payload
    ],
    ids=["new-identity", "different-hash", "duplicate-plus-new", "duplicate-plus-mismatch"],
)
def test_anything_but_an_exact_duplicate_after_close_raises_window_closed_and_records_nothing(
    ledger: Ledger, late: list[dict[str, Any]]
) -> None:
    ledger.admit("w", batch("w", event("1"), event("2", {"first": 1})))
    ledger.admit("w", batch("w", event("2")))  # quarantined
    ledger.close_window("w")
    before = recorded(ledger, "w")
    with pytest.raises(WindowClosed) as refused:
        ledger.admit("w", batch("w", *late))
    assert status_of(refused.value) == 409
    assert refused.value.code == "window_closed"
    assert recorded(ledger, "w") == before


def test_close_is_refused_with_the_pending_list_while_an_identity_is_unknown(
    make_ledger: MakeLedger,
) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    pending = sorted([ident("w", "2"), ident("w", "3")])
    bus.time_out_and_store.add(ident("w", "2"))
    bus.time_out_and_drop.add(ident("w", "3"))
    ledger.admit("w", batch("w", event("1"), event("2"), event("3")))
    before = recorded(ledger, "w")
    with pytest.raises(PublishUnknownPending) as refused:
        ledger.close_window("w")
    assert status_of(refused.value) == 409
    assert refused.value.as_json()["error"] == "publish_unknown_pending"
    assert refused.value.as_json()["pending"] == pending
    assert recorded(ledger, "w") == before
    assert ledger.receipt("w")["status"] == "OPEN"
    assert ledger.gate("w")["status"] == "BLOCKED"
    # Still refused while the bus still times out: fail-closed, never guessed.
    outcome = ledger.reconcile("w")
    assert outcome["reconciled"] == []
    assert sorted(outcome["still_unknown"]) == pending
    assert recorded(ledger, "w") == before
    with pytest.raises(PublishUnknownPending):
        ledger.close_window("w")


def test_after_reconcile_with_a_healed_bus_close_succeeds(make_ledger: MakeLedger) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    bus.time_out_and_store.add(ident("w", "2"))
    bus.time_out_and_drop.add(ident("w", "3"))
    ledger.admit("w", batch("w", event("1"), event("2"), event("3")))
    with pytest.raises(PublishUnknownPending):
        ledger.close_window("w")
    bus.heal()
    outcome = ledger.reconcile("w")
    assert sorted(outcome["reconciled"]) == sorted([ident("w", "2"), ident("w", "3")])
    assert outcome["still_unknown"] == []
    reconciled = {f["identity"]: f for f in of_type(ledger, "w", "PublishReconciled")}
    assert reconciled[ident("w", "2")]["offset"] == 2  # the bus had kept it
    assert reconciled[ident("w", "3")]["offset"] == 3  # sent now
    assert {f["outcome"] for f in reconciled.values()} == {"published"}
    assert ledger.gate("w")["status"] == "OPEN"
    receipt = ledger.close_window("w")
    assert (receipt["status"], receipt["gate"]) == ("CLOSED", "PASS")
    assert receipt["counts"]["admitted"] == 3
    assert receipt["counts"]["pending_unknown"] == 0
    after_close = ledger.reconcile("w")
    assert (after_close["reconciled"], after_close["still_unknown"]) == ([], [])
    assert verdicts(ledger.admit("w", batch("w", event("3")))) == [("DUPLICATE", 3)]


# --- two application instances on one database --------------------------------------------


def test_two_instances_admitting_overlapping_batches_admit_each_identity_once(
    make_ledger: MakeLedger,
) -> None:
    a, b = make_ledger(), make_ledger()
    assert verdicts(a.admit("w", batch("w", event("1"), event("2")))) == [
        ("ADMITTED", 1),
        ("ADMITTED", 2),
    ]
    assert verdicts(b.admit("w", batch("w", event("2"), event("3")))) == [
        ("DUPLICATE", 2),
        ("ADMITTED", 3),
    ]
    assert verdicts(a.admit("w", batch("w", event("3"), event("4")))) == [
        ("DUPLICATE", 3),
        ("ADMITTED", 4),
    ]
    assert verdicts(b.admit("w", batch("w", event("4"), event("5"), event("1")))) == [
        ("DUPLICATE", 4),
        ("ADMITTED", 5),
        ("DUPLICATE", 1),
    ]
    admitted = Counter(f["identity"] for f in of_type(a, "w", "EventAdmitted"))
    assert admitted == Counter({ident("w", str(i)): 1 for i in range(1, 6)})
    assert a.receipt("w")["counts"] == b.receipt("w")["counts"]
    assert a.verify("w").ok


def test_instances_admitting_from_many_threads_never_admit_an_identity_twice(
    make_ledger: MakeLedger,
) -> None:
    apps = [make_ledger(), make_ledger()]
    n_ids, n_threads, n_batches = 30, 6, 5
    plans = []
    for t in range(n_threads):
        rng = random.Random(t)
        plans.append([rng.sample(range(n_ids), 8) for _ in range(n_batches)])
    sent = {str(i) for plan in plans for ids in plan for i in ids}
    results: list[AdmissionResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(n_threads)

    def worker(t: int) -> None:
        try:
            start.wait()
            for ids in plans[t]:
                got = apps[t % 2].admit("w", batch("w", *(event(str(i)) for i in ids)))
                with lock:
                    results.extend(got)
        except BaseException as exc:  # reported below, not lost in the thread
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == n_threads * n_batches * 8

    by_identity: dict[str, list[AdmissionResult]] = defaultdict(list)
    for r in results:
        by_identity[r.identity].append(r)
    assert set(by_identity) == {ident("w", i) for i in sent}
    for identity, rs in by_identity.items():
        kinds = Counter(r.verdict for r in rs)
        assert kinds[Verdict.ADMITTED] == 1, identity
        assert kinds[Verdict.DUPLICATE] == len(rs) - 1, identity
        assert len({r.offset for r in rs}) == 1, identity
    admitted_offsets = sorted(r.offset for r in results if r.verdict is Verdict.ADMITTED)
    assert admitted_offsets == list(range(1, len(sent) + 1))

    history_admitted = of_type(apps[0], "w", "EventAdmitted")
    assert Counter(f["identity"] for f in history_admitted) == Counter(
        {ident("w", i): 1 for i in sent}
    )
    assert sorted(f["offset"] for f in history_admitted) == admitted_offsets
    assert len(of_type(apps[1], "w", "DuplicateAbsorbed")) == len(results) - len(sent)
    for app in apps:
        counts = app.receipt("w")["counts"]
        assert counts["admitted"] == len(sent)
        assert counts["duplicates"] == len(results) - len(sent)
        assert app.verify("w").ok


def test_an_instance_with_a_stale_cached_window_admits_with_correct_offsets(
    make_ledger: MakeLedger,
) -> None:
    a, b = make_ledger(), make_ledger()
    assert verdicts(a.admit("w", batch("w", event("1")))) == [("ADMITTED", 1)]
    assert a.receipt("w")["counts"]["admitted"] == 1  # A has the window cached
    assert verdicts(b.admit("w", batch("w", event("2"), event("3")))) == [
        ("ADMITTED", 2),
        ("ADMITTED", 3),
    ]
    assert verdicts(a.admit("w", batch("w", event("4"), event("2")))) == [
        ("ADMITTED", 4),
        ("DUPLICATE", 2),
    ]
    assert verdicts(b.admit("w", batch("w", event("5")))) == [("ADMITTED", 5)]
    assert verdicts(a.admit("w", batch("w", event("6")))) == [("ADMITTED", 6)]
    offsets = [f["offset"] for f in of_type(a, "w", "EventAdmitted")]
    assert offsets == [1, 2, 3, 4, 5, 6]
    assert a.receipt("w")["counts"]["admitted"] == 6
    assert a.receipt("w")["counts"]["duplicates"] == 1
    assert a.verify("w").ok


def test_an_instance_with_a_stale_cache_sees_a_close_made_by_another(
    make_ledger: MakeLedger,
) -> None:
    a, b = make_ledger(), make_ledger()
    a.admit("w", batch("w", event("1")))
    a.receipt("w")
    b.close_window("w")
    before = recorded(a, "w")
    with pytest.raises(WindowClosed):
        a.admit("w", batch("w", event("2")))
    assert verdicts(a.admit("w", batch("w", event("1")))) == [("DUPLICATE", 1)]
    assert recorded(a, "w") == before
    assert a.close_window("w") == b.receipt("w")


# --- tamper detection and the reviewer's recomputation -----------------------------------


def test_editing_one_stored_event_is_detected_at_that_version(
    make_ledger: MakeLedger, database_url: str
) -> None:
    ledger = make_ledger()
    for window_id in ("tampered", "intact"):
        ledger.admit(window_id, batch(window_id, event("1", {"amount": 10}), event("2")))
        ledger.admit(window_id, batch(window_id, event("3", {"amount": 30}), event("1")))
        ledger.close_window(window_id)
    assert ledger.verify("tampered").ok
    assert ledger.gate("tampered")["status"] == "PASS"
    history = ledger.history("tampered")
    version = next(
        h["version"]
        for h in history
        if h["type"] == "EventAdmitted" and h["fields"]["event_id"] == "3"
    )
    assert version == 4

    def edit(state: dict[str, Any]) -> None:
        assert state["payload"] == {"amount": 30}
        state["payload"]["amount"] = 31

    edit_stored_fields(database_url, "tampered", version, edit)

    for reader in (ledger, make_ledger()):  # whatever the instance, nothing is cached in verify
        result = reader.verify("tampered")
        assert result.ok is False
        assert result.first_bad_version == version
        assert result.events == len(history)
        assert result.as_json()["first_bad_version"] == version
        gate = reader.gate("tampered")
        assert gate["status"] == "FAIL"
        assert any(str(version) in reason for reason in gate["reasons"])
        intact = reader.verify("intact")
        assert (intact.ok, intact.first_bad_version) == (True, None)
        assert intact.head == reader.history("intact")[-1]["digest"]
        assert reader.gate("intact")["status"] == "PASS"
    tampered_history = make_ledger().history("tampered")
    assert tampered_history[version - 1]["fields"]["payload"] == {"amount": 31}
    with pytest.raises(AssertionError, match=f"version {version}"):
        recompute_chain(tampered_history)


def test_editing_a_digest_too_is_still_detected_by_the_next_link(
    make_ledger: MakeLedger, database_url: str
) -> None:
    ledger = make_ledger()
    ledger.admit("w", batch("w", event("1"), event("2"), event("3")))
    history = ledger.history("w")
    # The attacker recomputes the edited event's own digest, but cannot fix the next link.
    forged = dict(history[1])
    forged["fields"] = {**forged["fields"], "payload": {"id": "forged"}}
    new_digest = client_digest(forged)

    def edit(state: dict[str, Any]) -> None:
        state["payload"] = {"id": "forged"}
        state["digest"] = new_digest

    edit_stored_fields(database_url, "w", 2, edit)
    result = ledger.verify("w")
    assert (result.ok, result.first_bad_version) == (False, 3)


def test_a_reviewer_recomputes_the_whole_chain_from_the_history_alone(
    make_ledger: MakeLedger,
) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    bus.time_out_and_store.add(ident("w", "u"))
    ledger.admit(
        "w",
        batch(
            "w",
            event(
                "1",
                {"price": 12.5, "big": 2**53 - 1, "tiny": 1e-7, "huge": 1e21},
                source={"partition": "p0", "offset": 0},
            ),
            event("\U0001f600", {"\ue000": "private", "\U0001f600": "astral", "ctl": "\u0001"}),
            event("u", {"n": None, "list": [True, False, [], {}]}),
        ),
    )
    ledger.admit(
        "w",
        batch(
            "w",
            event("1", {"price": 12.5, "big": 2**53 - 1, "tiny": 1e-7, "huge": 1e21}),
            event("\U0001f600", {"x": 1}),
        ),
    )
    bus.heal()
    ledger.reconcile("w")
    ledger.close_window("w")
    history = ledger.history("w")
    assert [h["type"] for h in history] == [
        "WindowOpened",
        "EventAdmitted",
        "EventAdmitted",
        "PublishUnknown",
        "DuplicateAbsorbed",
        "MismatchQuarantined",
        "PublishReconciled",
        "WindowClosed",
    ]
    for item in history:
        assert set(item) == {"version", "type", "recorded_at", "fields", "prev_digest", "digest"}
        assert item["recorded_at"].endswith("Z")
    # The history is plain JSON: what the HTTP endpoint would serve.
    served = json.loads(json.dumps(history))
    head = recompute_chain(served)
    verification = ledger.verify("w")
    assert verification.as_json() == {
        "ok": True,
        "events": len(history),
        "head": head,
        "first_bad_version": None,
    }
    assert ledger.receipt("w")["chain_head"] == head


def test_payloads_that_look_like_type_tags_are_stored_and_served_unchanged(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    payload = {
        "_type_": "decimal",
        "_data_": "1.5",
        "nested": {"_type_": "uuid", "_data_": "x"},
        "neg_zero": -0.0,
        "whole": 1.0,
    }
    (result,) = ledger.admit("w", batch("w", event("1", payload)))
    (admitted,) = of_type(make_ledger(), "w", "EventAdmitted")  # read back from storage
    assert admitted["payload"] == payload
    assert client_payload_hash(admitted["payload"]) == result.payload_hash
    assert ledger.verify("w").ok
    recompute_chain(ledger.history("w"))


def test_history_pages_with_after_and_limit(ledger: Ledger) -> None:
    ledger.admit("w", batch("w", *(event(str(i)) for i in range(9))))
    whole = ledger.history("w")
    assert len(whole) == 10
    pages = [ledger.history("w", after=after, limit=4) for after in (0, 4, 8)]
    assert [len(p) for p in pages] == [4, 4, 2]
    assert [h for p in pages for h in p] == whole
    assert ledger.history("w", after=10) == []
    assert list(ledger.iter_history("w")) == whole


# --- bad input ----------------------------------------------------------------------------


def raw(
    event_type: str = TYPE, event_id: str = "1", payload: Any = None, source: SourceIn | None = None
) -> AdmissionIn:
    """An AdmissionIn built directly, as Python callers do, bypassing the JSON decoder."""
    return AdmissionIn(
        event_type=event_type,
        event_id=event_id,
        payload={"id": event_id} if payload is None else payload,
        source=source,
    )


def oversize_payload(extra: int) -> dict[str, str]:
    """A payload whose canonical form is DEFAULT_MAX_PAYLOAD_BYTES + extra bytes."""
    filler = DEFAULT_MAX_PAYLOAD_BYTES + extra - len(b'{"x":""}')
    return {"x": "a" * filler}


BAD_BATCHES: dict[str, tuple[str, Callable[[], list[AdmissionIn]]]] = {
    "window-id-with-space": ("bad window", lambda: [raw()]),
    "window-id-empty": ("", lambda: [raw()]),
    "window-id-too-long": ("w" * 129, lambda: [raw()]),
    "window-id-non-ascii": ("w\u00e9", lambda: [raw()]),
    "event-type-with-slash": ("w", lambda: [raw(event_type="order/created")]),
    "event-type-empty": ("w", lambda: [raw(event_type="")]),
    "event-type-too-long": ("w", lambda: [raw(event_type="t" * 129)]),
    "empty-batch": ("w", lambda: []),
    "batch-of-1001": ("w", lambda: [raw(event_id=str(i)) for i in range(MAX_BATCH + 1)]),
    "event-id-257-chars": ("w", lambda: [raw(event_id="x" * 257)]),
    "event-id-empty": ("w", lambda: [raw(event_id="")]),
    "two-to-the-60-in-payload": ("w", lambda: [raw(), raw("t", "2", {"n": [1, {"m": 2**60}]})]),
    "minus-two-to-the-60-in-payload": ("w", lambda: [raw(payload={"n": -(2**60)})]),
    "nan-in-payload": ("w", lambda: [raw(payload={"n": float("nan")})]),
    "infinity-in-payload": ("w", lambda: [raw(payload={"n": float("inf")})]),
    "lone-surrogate-in-payload": ("w", lambda: [raw(payload={"s": "\ud800"})]),
    "payload-over-1-mib": ("w", lambda: [raw(), raw(event_id="2", payload=oversize_payload(1))]),
    "payload-not-an-object": ("w", lambda: [raw(payload=[1, 2])]),
    "negative-source-offset": ("w", lambda: [raw(source=SourceIn(partition="p", offset=-1))]),
    # Chained with the event, so it must have a JCS form like everything else hashed.
    "source-offset-2-to-the-53": (
        "w",
        lambda: [raw(source=SourceIn(partition="p", offset=2**53))],
    ),
    "lone-surrogate-in-partition": (
        "w",
        lambda: [raw(source=SourceIn(partition="p\ud800", offset=1))],
    ),
    "lone-surrogate-in-event-id": ("w", lambda: [raw(event_id="e\ud800")]),
    # The first bad item is the one reported, whichever of its checks fails.
    "bad-payload-before-a-bad-event-type": (
        "w",
        lambda: [raw(payload={"n": 2**60}), raw(event_type="a/b", event_id="2")],
    ),
}


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_bad_input_is_refused_by_prepare_and_leaves_nothing_recorded(
    ledger: Ledger, case: str
) -> None:
    window_id, items = BAD_BATCHES[case]
    target = window_id if window_id == "w" else "w"
    with pytest.raises(InvalidAdmission) as refused:
        ledger.admit(target, prepare(window_id, items()))
    assert 400 <= status_of(refused.value) < 500
    assert_window_does_not_exist(ledger, "w")
    # And in a window that already exists, nothing is added either.
    ledger.admit("w", batch("w", event("existing")))
    before = recorded(ledger, "w")
    with pytest.raises(InvalidAdmission):
        ledger.admit(target, prepare(window_id, items()))
    assert recorded(ledger, "w") == before


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_a_batch_prepared_on_use_is_refused_as_prepare_refuses_it_and_records_nothing(
    ledger: Ledger, case: str
) -> None:
    # The payloads of a PreparedOnUse batch are prepared while the ledger looks up their
    # identities (ADR 0040): in a window the ledger has cached, on PostgreSQL, a refusal comes
    # from inside that round trip. It must be prepare's refusal, and leave nothing behind.
    window_id, items = BAD_BATCHES[case]
    target = window_id if window_id == "w" else "w"
    with pytest.raises(InvalidAdmission) as eager:
        prepare(window_id, items())
    ledger.admit("w", PreparedOnUse("w", [raw(event_id="existing")]))
    before = recorded(ledger, "w")
    with pytest.raises(InvalidAdmission) as on_use:
        ledger.admit(target, PreparedOnUse(window_id, items()))
    assert (type(on_use.value), str(on_use.value)) == (type(eager.value), str(eager.value))
    assert recorded(ledger, "w") == before
    # The ledger goes on from there (its connection and its cached window are sound).
    assert verdicts(ledger.admit("w", PreparedOnUse("w", [raw(event_id="next")]))) == [
        ("ADMITTED", 2)
    ]


def test_a_batch_prepared_on_use_gets_the_verdicts_prepare_gets(ledger: Ledger) -> None:
    rng = random.Random(40)
    batches = [
        [
            raw(event_id=str(rng.randrange(300)), payload={"n": rng.randrange(3)})
            for _ in range(rng.randrange(1, 120))
        ]
        for _ in range(12)
    ]

    def answers(results: list[AdmissionResult]) -> list[tuple[Any, ...]]:
        return [(r.event_id, r.payload_hash, r.verdict, r.offset) for r in results]

    eager = [answers(ledger.admit("a", prepare("a", items))) for items in batches]
    on_use = [answers(ledger.admit("b", PreparedOnUse("b", items))) for items in batches]
    assert on_use == eager
    assert {answer[2] for answers in on_use for answer in answers} == {
        Verdict.ADMITTED,
        Verdict.DUPLICATE,
        Verdict.QUARANTINED,
    }
    assert recorded(ledger, "b")[1] == recorded(ledger, "a")[1]


def test_an_oversize_payload_is_payload_too_large_at_one_byte_over_the_limit(
    ledger: Ledger,
) -> None:
    at_limit = oversize_payload(0)
    assert len(rfc8785.dumps(at_limit)) == DEFAULT_MAX_PAYLOAD_BYTES
    (prepared,) = prepare("w", [raw(payload=at_limit)])
    assert prepared.payload_hash == client_payload_hash(at_limit)
    with pytest.raises(PayloadTooLarge) as refused:
        prepare("w", [raw(payload=oversize_payload(1))])
    assert status_of(refused.value) == 413
    assert refused.value.code == "payload_too_large"
    with pytest.raises(PayloadTooLarge):
        prepare("w", [raw(payload={"small": 1})], max_payload_bytes=5)
    assert_window_does_not_exist(ledger, "w")


def test_the_json_decoder_refuses_what_the_schema_forbids(ledger: Ledger) -> None:
    for bad in (
        {"event_type": "bad type", "event_id": "1", "payload": {}},
        {"event_type": TYPE, "event_id": "x" * 257, "payload": {}},
        {"event_type": TYPE, "event_id": "", "payload": {}},
        {"event_type": TYPE, "event_id": "1", "payload": [1]},
        {"event_type": TYPE, "event_id": "1", "payload": {}, "extra": 1},
        {
            "event_type": TYPE,
            "event_id": "1",
            "payload": {},
            "source": {"partition": "p", "offset": -1},
        },
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, AdmissionIn)
    assert_window_does_not_exist(ledger, "w")


def test_the_largest_safe_integers_and_a_256_character_event_id_are_accepted(
    ledger: Ledger,
) -> None:
    payload = {"max": 2**53 - 1, "min": -(2**53 - 1)}
    results = ledger.admit("w", batch("w", event("x" * 256, payload)))
    assert verdicts(results) == [("ADMITTED", 1)]
    assert of_type(ledger, "w", "EventAdmitted")[0]["payload"] == payload
    assert ledger.verify("w").ok


# --- the receipt --------------------------------------------------------------------------


def test_the_receipt_counts_offsets_and_chain_follow_the_history(make_ledger: MakeLedger) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    bus.time_out_and_store.add(ident("r", "3"))
    bus.time_out_and_drop.add(ident("r", "4"))
    first = ledger.admit(
        "r",
        batch(
            "r",
            event("1", source={"partition": "p0", "offset": 5}),
            event("2", source={"partition": "p0", "offset": 2}),
            event("3", source={"partition": "p1", "offset": 9}),
            event("4"),
        ),
    )
    assert verdicts(first) == [
        ("ADMITTED", 1),
        ("ADMITTED", 2),
        ("PUBLISH_UNKNOWN", None),
        ("PUBLISH_UNKNOWN", None),
    ]
    second = ledger.admit(
        "r", batch("r", event("1"), event("2", {"changed": 1}), event("3", {"changed": 1}))
    )
    assert verdicts(second) == [("DUPLICATE", 1), ("QUARANTINED", None), ("QUARANTINED", None)]

    receipt = ledger.receipt("r")
    history = ledger.history("r")
    assert receipt["window_id"] == "r"
    assert (receipt["status"], receipt["gate"]) == ("OPEN", "BLOCKED")
    assert receipt["counts"] == {
        "admitted": 2,
        "duplicates": 1,
        "quarantined": 2,
        "publish_unknown": 2,
        "reconciled": 0,
        "pending_unknown": 2,
    }
    assert receipt["bus_offsets"] == {"first": 1, "last": 2}
    assert receipt["source_offsets"] == {
        "p0": {"min": 2, "max": 5},
        "p1": {"min": 9, "max": 9},
    }
    assert receipt["events"] == len(history) == 8
    assert receipt["chain_head"] == history[-1]["digest"]
    assert receipt["opened_at"] == history[0]["recorded_at"]
    assert receipt["closed_at"] is None

    bus.heal()
    outcome = ledger.reconcile("r")
    assert sorted(outcome["reconciled"]) == sorted([ident("r", "3"), ident("r", "4")])
    assert outcome["still_unknown"] == []
    receipt = ledger.receipt("r")
    assert (receipt["status"], receipt["gate"]) == ("OPEN", "OPEN")
    assert receipt["counts"] == {
        "admitted": 4,  # reconciled ones included
        "duplicates": 1,
        "quarantined": 2,
        "publish_unknown": 2,  # ever recorded
        "reconciled": 2,
        "pending_unknown": 0,
    }
    assert receipt["bus_offsets"] == {"first": 1, "last": 4}

    closed = ledger.close_window("r")
    history = ledger.history("r")
    assert (closed["status"], closed["gate"]) == ("CLOSED", "PASS")
    assert closed["counts"] == receipt["counts"]
    assert closed["events"] == len(history) == 11
    assert closed["chain_head"] == history[-1]["digest"] == ledger.verify("r").head
    assert closed["closed_at"] == history[-1]["recorded_at"]
    assert closed["opened_at"] == history[0]["recorded_at"]
    assert closed == make_ledger().receipt("r")  # a fresh instance rebuilds the same receipt
    assert json.loads(json.dumps(closed)) == closed


def test_the_index_agrees_with_the_receipt(make_ledger: MakeLedger) -> None:
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    bus.time_out_and_store.add(ident("w", "2"))
    ledger.admit("w", batch("w", event("1"), event("2"), event("1", {"other": 1})))
    assert ledger.index.count_identities("w") == {"ADMITTED": 1, "UNKNOWN": 1}
    bus.heal()
    ledger.reconcile("w")
    assert ledger.index.count_identities("w") == {"ADMITTED": 2}
    assert ledger.receipt("w")["counts"]["admitted"] == 2


def test_reads_of_an_unknown_window_raise_window_not_found(ledger: Ledger) -> None:
    ledger.admit("other", batch("other", event("1")))
    assert_window_does_not_exist(ledger, "missing")
    with pytest.raises(WindowNotFound):
        ledger.gate("missing")
    with pytest.raises(WindowNotFound):
        ledger.reconcile("missing")
    with pytest.raises(WindowNotFound):
        list(ledger.iter_history("missing"))
