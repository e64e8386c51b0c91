"""Judging one arrival (contract s.3), without a database or a bus.

`ledger.application.judging` is pure: these tests drive it with a real `Window` and admissions
made by `prepare` (the validation every entry point uses), and read what it answered (verdict,
offset, the identity's new `Known` state) and what it recorded (`window.collect_events()`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from ledger.admissions import Admission, AdmissionIn, SourceIn, prepare
from ledger.application.judging import (
    Judgement,
    admitted_form,
    judge_arrival,
    judge_closed,
    to_publish,
)
from ledger.domain import META_KEYS, Window, chain_digest, format_recorded_at
from ledger.errors import WindowClosed
from ledger.ports import (
    BusMessage,
    OutgoingMessage,
    Published,
    PublishOutcome,
    Superseded,
    Unknown,
)
from ledger.verdicts import IdentityState, Known, Verdict

WINDOW = "w-judging"
TYPE = "order.created"


def arrivals(*items: tuple[str, dict[str, Any]]) -> list[Admission]:
    """One batch of (event_id, payload) in WINDOW, validated and hashed by `prepare`."""
    return prepare(WINDOW, [AdmissionIn(event_type=TYPE, event_id=i, payload=p) for i, p in items])


def arrival(event_id: str, payload: dict[str, Any], source: SourceIn | None = None) -> Admission:
    return prepare(
        WINDOW, [AdmissionIn(event_type=TYPE, event_id=event_id, payload=payload, source=source)]
    )[0]


def open_window() -> Window:
    """A new window whose WindowOpened is already collected: what judging records comes after."""
    window = Window.open(WINDOW)
    [opened] = window.collect_events()
    assert type(opened).__name__ == "WindowOpened"
    return window


def kinds(events: Sequence[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def own_fields(event: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(event).items() if k not in META_KEYS}


def judge_batch(
    window: Window,
    admissions: Sequence[Admission],
    known: dict[str, Known],
    outcomes: dict[str, PublishOutcome],
) -> list[Judgement]:
    """What the admit command does with a batch: in order, each arrival judged against the
    state the earlier ones left."""
    judgements = []
    for a in admissions:
        judgement = judge_arrival(window, a, known.get(a.identity), outcomes)
        if judgement[2] is not None:
            known[a.identity] = judgement[2]
        judgements.append(judgement)
    return judgements


def record_unknown(window: Window, a: Admission) -> Known:
    """Bring `a`'s identity to UNKNOWN the way the ledger does: its publish timed out."""
    verdict, _, now = judge_arrival(window, a, None, {a.identity: Unknown("timeout")})
    assert verdict is Verdict.PUBLISH_UNKNOWN and now is not None
    window.collect_events()
    return now


def record_admitted(window: Window, a: Admission, offset: int) -> Known:
    verdict, _, now = judge_arrival(window, a, None, {a.identity: Published(offset)})
    assert verdict is Verdict.ADMITTED and now is not None
    window.collect_events()
    return now


# --- judge_arrival: one row of the contract's table each --------------------------------------


def test_a_new_identity_the_bus_acknowledged_is_admitted_at_its_offset() -> None:
    window = open_window()
    a = arrival("e1", {"amount": 5}, SourceIn(partition="p0", offset=41))
    outcomes: dict[str, PublishOutcome] = {a.identity: Published(7)}

    judgement = judge_arrival(window, a, None, outcomes)

    assert judgement == (
        Verdict.ADMITTED,
        7,
        Known(IdentityState.ADMITTED, a.payload_hash, 7),
    )
    [admitted] = window.collect_events()
    assert type(admitted).__name__ == "EventAdmitted"
    assert own_fields(admitted) == {
        "identity": a.identity,
        "event_type": TYPE,
        "event_id": "e1",
        "payload": {"amount": 5},
        "payload_hash": a.payload_hash,
        "offset": 7,
        "source": {"partition": "p0", "offset": 41},
    }
    assert window.admitted == 1
    assert window.bus_offset_range() == {"first": 7, "last": 7}
    assert outcomes == {}, "a bus outcome is used once"


def test_a_new_identity_admitted_with_its_form_made_ahead_chains_the_digest_of_its_fields() -> None:
    window = open_window()
    a = arrival("e1", {"amount": 5, "note": "é"}, SourceIn(partition="p0", offset=3))
    forms = {a.identity: (a, admitted_form(a))}

    judge_arrival(window, a, None, {a.identity: Published(12)}, forms)

    [admitted] = window.collect_events()
    assert admitted.offset == 12
    assert admitted.digest == chain_digest(
        admitted.prev_digest,
        admitted.originator_version,
        "EventAdmitted",
        format_recorded_at(admitted.timestamp),
        own_fields(admitted),
    )


def test_a_form_made_for_another_arrival_of_the_same_identity_is_not_used() -> None:
    window = open_window()
    ours = arrival("e1", {"amount": 5})
    theirs = arrival("e1", {"amount": 6})  # same identity, another payload
    assert ours.identity == theirs.identity
    forms = {ours.identity: (theirs, admitted_form(theirs))}

    judge_arrival(window, ours, None, {ours.identity: Published(1)}, forms)

    [admitted] = window.collect_events()
    assert admitted.payload == {"amount": 5}
    assert admitted.digest == chain_digest(
        admitted.prev_digest,
        admitted.originator_version,
        "EventAdmitted",
        format_recorded_at(admitted.timestamp),
        own_fields(admitted),
    )


def test_a_new_identity_whose_publish_outcome_is_unknown_is_recorded_as_publish_unknown() -> None:
    window = open_window()
    a = arrival("e1", {"amount": 5})

    judgement = judge_arrival(window, a, None, {a.identity: Unknown("publish timed out")})

    assert judgement == (
        Verdict.PUBLISH_UNKNOWN,
        None,
        Known(IdentityState.UNKNOWN, a.payload_hash, None),
    )
    [unknown] = window.collect_events()
    assert type(unknown).__name__ == "PublishUnknown"
    assert own_fields(unknown) == {
        "identity": a.identity,
        "event_type": TYPE,
        "event_id": "e1",
        "payload": {"amount": 5},
        "payload_hash": a.payload_hash,
        "reason": "publish timed out",
        "source": None,
    }
    assert window.pending == {a.identity: unknown.originator_version}
    assert window.admitted == 0


def test_an_admitted_identity_again_with_its_payload_is_a_duplicate_at_its_first_offset() -> None:
    window = open_window()
    first = arrival("e1", {"amount": 5})
    before = record_admitted(window, first, 4)
    again = arrival("e1", {"amount": 5}, SourceIn(partition="p1", offset=9))
    outcomes: dict[str, PublishOutcome] = {}

    judgement = judge_arrival(window, again, before, outcomes)

    assert judgement == (Verdict.DUPLICATE, 4, None)
    [absorbed] = window.collect_events()
    assert type(absorbed).__name__ == "DuplicateAbsorbed"
    assert own_fields(absorbed) == {
        "identity": first.identity,
        "payload_hash": first.payload_hash,
        "offset": 4,
        "source": {"partition": "p1", "offset": 9},
    }
    assert (window.admitted, window.duplicates) == (1, 1)


@pytest.mark.parametrize("state", [IdentityState.ADMITTED, IdentityState.UNKNOWN])
def test_a_known_identity_arriving_with_another_payload_is_quarantined_and_stays_as_it_was(
    state: IdentityState,
) -> None:
    window = open_window()
    first = arrival("e1", {"amount": 5})
    if state is IdentityState.ADMITTED:
        before = record_admitted(window, first, 2)
    else:
        before = record_unknown(window, first)
    pending_before = dict(window.pending)
    other = arrival("e1", {"amount": 500}, SourceIn(partition="p0", offset=8))
    outcomes: dict[str, PublishOutcome] = {other.identity: Published(99)}

    judgement = judge_arrival(window, other, before, outcomes)

    assert judgement == (Verdict.QUARANTINED, None, None)
    [quarantined] = window.collect_events()
    assert type(quarantined).__name__ == "MismatchQuarantined"
    assert own_fields(quarantined) == {
        "identity": first.identity,
        "event_type": TYPE,
        "event_id": "e1",
        "original_hash": first.payload_hash,
        "received_hash": other.payload_hash,
        "received_payload": {"amount": 500},
        "source": {"partition": "p0", "offset": 8},
    }
    assert window.quarantined == 1
    assert window.pending == pending_before
    assert outcomes == {other.identity: Published(99)}, "a mismatch never uses the bus"


def test_an_unknown_identity_the_bus_now_acks_is_admitted_through_publish_reconciled() -> None:
    window = open_window()
    a = arrival("e1", {"amount": 5})
    before = record_unknown(window, a)
    assert a.identity in window.pending

    judgement = judge_arrival(window, a, before, {a.identity: Published(6)})

    assert judgement == (
        Verdict.ADMITTED,
        6,
        Known(IdentityState.ADMITTED, a.payload_hash, 6),
    )
    [reconciled] = window.collect_events()
    assert type(reconciled).__name__ == "PublishReconciled"
    assert own_fields(reconciled) == {"identity": a.identity, "outcome": "published", "offset": 6}
    assert window.pending == {}
    assert (window.admitted, window.reconciled, window.publish_unknown) == (1, 1, 1)


def bus_holding(a: Admission, payload: dict[str, Any], offset: int) -> Superseded:
    """The bus's answer when it already holds `a`'s identity with `payload` at `offset`."""
    held = arrival(a.event_id, payload)
    message = OutgoingMessage(
        WINDOW, a.identity, a.event_type, a.event_id, payload, held.payload_hash
    )
    return Superseded(offset, BusMessage(offset, a.identity, message))


@pytest.mark.parametrize("case", ["unknown-again", "superseded", "no-outcome"])
def test_an_unknown_identity_still_unknown_answers_publish_unknown_and_records_nothing(
    case: str,
) -> None:
    window = open_window()
    a = arrival("e1", {"amount": 5})
    before = record_unknown(window, a)
    outcomes: dict[str, PublishOutcome] = {}
    if case == "unknown-again":
        outcomes[a.identity] = Unknown("still timing out")
    elif case == "superseded":
        # The bus holds the identity with another payload, but the ledger has it pending as
        # UNKNOWN with ours: reconcile settles that, not an arrival.
        outcomes[a.identity] = bus_holding(a, {"amount": 7}, 3)
    # "no-outcome": an earlier arrival of the batch used the identity's outcome

    judgement = judge_arrival(window, a, before, outcomes)

    assert judgement == (Verdict.PUBLISH_UNKNOWN, None, None)
    assert window.collect_events() == []
    assert a.identity in window.pending
    assert (window.publish_unknown, window.admitted, window.quarantined) == (1, 0, 0)


def test_a_new_identity_the_bus_holds_with_other_payload_is_adopted_and_ours_quarantined() -> None:
    window = open_window()
    ours = arrival("e1", {"amount": 5}, SourceIn(partition="p0", offset=1))
    theirs = arrival("e1", {"amount": 7})
    outcomes: dict[str, PublishOutcome] = {ours.identity: bus_holding(ours, {"amount": 7}, 4)}

    judgement = judge_arrival(window, ours, None, outcomes)

    assert judgement == (
        Verdict.QUARANTINED,
        None,
        Known(IdentityState.ADMITTED, theirs.payload_hash, 4),
    )
    adopted, quarantined = window.collect_events()
    assert type(adopted).__name__ == "EventAdmitted"
    assert own_fields(adopted) == {
        "identity": ours.identity,
        "event_type": TYPE,
        "event_id": "e1",
        "payload": {"amount": 7},
        "payload_hash": theirs.payload_hash,
        "offset": 4,
        "source": None,  # where the other writer read it is not ours to know
    }
    assert type(quarantined).__name__ == "MismatchQuarantined"
    assert quarantined.original_hash == theirs.payload_hash
    assert quarantined.received_hash == ours.payload_hash
    assert quarantined.received_payload == {"amount": 5}
    assert (window.admitted, window.quarantined) == (1, 1)
    assert outcomes == {}


def test_a_new_identity_the_bus_holds_under_a_foreign_body_is_recorded_as_publish_unknown() -> None:
    window = open_window()
    a = arrival("e1", {"amount": 5})
    foreign = Superseded(9, BusMessage(9, a.identity, None))

    judgement = judge_arrival(window, a, None, {a.identity: foreign})

    assert judgement == (
        Verdict.PUBLISH_UNKNOWN,
        None,
        Known(IdentityState.UNKNOWN, a.payload_hash, None),
    )
    [unknown] = window.collect_events()
    assert type(unknown).__name__ == "PublishUnknown"
    assert "at 9" in unknown.reason and "not a ledger admission" in unknown.reason
    # Pending: the window cannot close over it until reconcile settles it (fail-closed).
    assert window.pending == {a.identity: unknown.originator_version}


def test_a_repeat_later_in_the_batch_is_judged_against_the_earlier_item() -> None:
    window = open_window()
    batch = arrivals(
        ("e1", {"amount": 5}),
        ("e1", {"amount": 5}),
        ("e1", {"amount": 6}),
        ("e2", {"amount": 1}),
    )
    known: dict[str, Known] = {}
    outcomes: dict[str, PublishOutcome] = {batch[0].identity: Published(1)}
    outcomes[batch[3].identity] = Unknown("timeout")

    judgements = judge_batch(window, batch, known, outcomes)

    assert [(v, o) for v, o, _ in judgements] == [
        (Verdict.ADMITTED, 1),
        (Verdict.DUPLICATE, 1),
        (Verdict.QUARANTINED, None),
        (Verdict.PUBLISH_UNKNOWN, None),
    ]
    assert kinds(window.collect_events()) == [
        "EventAdmitted",
        "DuplicateAbsorbed",
        "MismatchQuarantined",
        "PublishUnknown",
    ]
    assert known == {
        batch[0].identity: Known(IdentityState.ADMITTED, batch[0].payload_hash, 1),
        batch[3].identity: Known(IdentityState.UNKNOWN, batch[3].payload_hash, None),
    }


def test_a_same_payload_repeat_of_an_unknown_publish_in_the_batch_records_nothing_new() -> None:
    window = open_window()
    batch = arrivals(("e1", {"amount": 5}), ("e1", {"amount": 5}))
    outcomes: dict[str, PublishOutcome] = {batch[0].identity: Unknown("timeout")}

    judgements = judge_batch(window, batch, {}, outcomes)

    assert [v for v, _, _ in judgements] == [Verdict.PUBLISH_UNKNOWN, Verdict.PUBLISH_UNKNOWN]
    assert kinds(window.collect_events()) == ["PublishUnknown"]
    assert window.publish_unknown == 1


# --- to_publish ----------------------------------------------------------------------------


def test_to_publish_takes_the_first_arrival_of_each_new_identity_in_batch_order() -> None:
    batch = arrivals(
        ("e2", {"n": 1}),
        ("e1", {"n": 1}),
        ("e2", {"n": 2}),  # a later arrival of e2: judged against the first, not published
        ("e3", {"n": 1}),
        ("e1", {"n": 1}),
    )

    wanted = to_publish(batch, {})

    assert list(wanted) == [batch[0].identity, batch[1].identity, batch[3].identity]
    assert wanted[batch[0].identity] is batch[0]
    assert wanted[batch[1].identity] is batch[1]


def test_to_publish_skips_duplicates_and_mismatches_and_republishes_unknowns() -> None:
    (
        duplicate,
        mismatch_admitted,
        same_unknown,
        mismatch_unknown,
        new,
    ) = batch = arrivals(
        ("dup", {"n": 1}),
        ("mismatch-admitted", {"n": 1}),
        ("same-unknown", {"n": 1}),
        ("mismatch-unknown", {"n": 1}),
        ("new", {"n": 1}),
    )
    other = arrival("any", {"n": 2}).payload_hash
    known = {
        duplicate.identity: Known(IdentityState.ADMITTED, duplicate.payload_hash, 1),
        mismatch_admitted.identity: Known(IdentityState.ADMITTED, other, 2),
        same_unknown.identity: Known(IdentityState.UNKNOWN, same_unknown.payload_hash),
        mismatch_unknown.identity: Known(IdentityState.UNKNOWN, other),
    }

    wanted = to_publish(batch, known)

    assert list(wanted) == [same_unknown.identity, new.identity]


# --- judge_closed ----------------------------------------------------------------------------


def test_after_close_exact_duplicates_are_answered_with_their_original_offsets() -> None:
    first, second = arrivals(("e1", {"n": 1}), ("e2", {"n": 2}))
    known = {
        first.identity: Known(IdentityState.ADMITTED, first.payload_hash, 3),
        second.identity: Known(IdentityState.ADMITTED, second.payload_hash, 8),
    }

    results = judge_closed(WINDOW, [second, first, second], known)

    assert [(r.event_id, r.identity, r.payload_hash, r.verdict, r.offset) for r in results] == [
        ("e2", second.identity, second.payload_hash, Verdict.DUPLICATE, 8),
        ("e1", first.identity, first.payload_hash, Verdict.DUPLICATE, 3),
        ("e2", second.identity, second.payload_hash, Verdict.DUPLICATE, 8),
    ]


@pytest.mark.parametrize("case", ["new", "other-payload", "unknown-same-payload"])
def test_after_close_anything_but_an_exact_duplicate_refuses_the_whole_batch(case: str) -> None:
    duplicate, late = arrivals(("e1", {"n": 1}), ("late", {"n": 2}))
    assert late.payload_hash != duplicate.payload_hash
    known = {duplicate.identity: Known(IdentityState.ADMITTED, duplicate.payload_hash, 1)}
    if case == "other-payload":
        known[late.identity] = Known(IdentityState.ADMITTED, duplicate.payload_hash, 2)
    elif case == "unknown-same-payload":
        known[late.identity] = Known(IdentityState.UNKNOWN, late.payload_hash)

    with pytest.raises(WindowClosed) as refused:
        judge_closed(WINDOW, [duplicate, late], known)

    assert refused.value.code == "window_closed"
    assert WINDOW in refused.value.detail
    assert f"{TYPE}/late" in refused.value.detail
