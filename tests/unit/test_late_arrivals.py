"""Late arrivals (contract s.9, "late drift is never silent"), without a database or a bus.

After close, `judge_after_close` answers exact duplicates and refuses anything else whole; the
arrivals whose identity is known with another payload come back as late mismatches, recorded by
`record_late` in the window's `LateArrivals` aggregate: its own id and its own hash chain, never
the window's.
"""

from __future__ import annotations

import itertools
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.persistence import Mapper

from ledger.admissions import Admission, AdmissionIn, SourceIn, prepare
from ledger.application.judging import (
    LateMismatch,
    judge_after_close,
    judge_closed,
    record_late,
)
from ledger.domain import GENESIS_DIGEST, META_KEYS, chain_digest, format_recorded_at, window_uuid
from ledger.domain.late import LateArrivals, late_arrivals_uuid
from ledger.errors import WindowClosed
from ledger.infrastructure.transcoder import JSONStateTranscoder, LedgerMapper
from ledger.verdicts import IdentityState, Known, Verdict

WINDOW = "w-late"
TYPE = "order.created"


def arrival(event_id: str, payload: dict[str, Any], source: SourceIn | None = None) -> Admission:
    return prepare(
        WINDOW, [AdmissionIn(event_type=TYPE, event_id=event_id, payload=payload, source=source)]
    )[0]


def admitted(a: Admission, offset: int, payload_hash: str | None = None) -> Known:
    return Known(IdentityState.ADMITTED, payload_hash or a.payload_hash, offset)


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def own_fields(e: Any) -> dict[str, Any]:
    return {k: v for k, v in e.__dict__.items() if k not in META_KEYS}


# --- the judgement after close ------------------------------------------------------------


def test_a_batch_of_exact_duplicates_is_answered_and_gives_no_late_mismatch() -> None:
    first, second = arrival("e1", {"n": 1}), arrival("e2", {"n": 2})
    known = {first.identity: admitted(first, 3), second.identity: admitted(second, 8)}

    judged = judge_after_close(WINDOW, [second, first], known)

    assert judged.refusal is None
    assert judged.mismatches == []
    assert [(r.event_id, r.verdict, r.offset) for r in judged.results] == [
        ("e2", Verdict.DUPLICATE, 8),
        ("e1", Verdict.DUPLICATE, 3),
    ]


@pytest.mark.parametrize("state", [IdentityState.ADMITTED, IdentityState.UNKNOWN])
def test_an_identity_known_with_another_payload_is_refused_and_is_a_late_mismatch(
    state: IdentityState,
) -> None:
    original = arrival("e1", {"n": 1})
    changed = arrival("e1", {"n": 2}, SourceIn(partition="p0", offset=7))
    offset = 4 if state is IdentityState.ADMITTED else None
    known = {original.identity: Known(state, original.payload_hash, offset)}

    judged = judge_after_close(WINDOW, [changed], known)

    assert judged.mismatches == [LateMismatch(changed, original.payload_hash)]
    assert judged.results == []
    assert judged.refusal is not None
    assert judged.refusal.code == "window_closed"
    assert f"{TYPE}/e1" in judged.refusal.detail


def test_a_new_identity_after_close_is_refused_and_is_no_late_mismatch() -> None:
    new = arrival("never-seen", {"n": 1})

    judged = judge_after_close(WINDOW, [new, new], {})

    assert judged.mismatches == []
    assert judged.refusal is not None
    assert f"{TYPE}/never-seen" in judged.refusal.detail


def test_an_unknown_identity_with_its_own_payload_is_refused_and_is_no_late_mismatch() -> None:
    pending = arrival("e1", {"n": 1})
    known = {pending.identity: Known(IdentityState.UNKNOWN, pending.payload_hash)}

    judged = judge_after_close(WINDOW, [pending], known)

    assert judged.mismatches == []
    assert judged.refusal is not None


def test_every_mismatch_of_a_mixed_batch_is_late_and_its_repeats_count_each_time() -> None:
    original, duplicate = arrival("e1", {"n": 1}), arrival("e2", {"n": 2})
    changed, new = arrival("e1", {"n": "x"}), arrival("e3", {"n": 3})
    known = {original.identity: admitted(original, 1), duplicate.identity: admitted(duplicate, 2)}

    judged = judge_after_close(WINDOW, [duplicate, new, changed, duplicate, changed], known)

    assert judged.mismatches == [
        LateMismatch(changed, original.payload_hash),
        LateMismatch(changed, original.payload_hash),
    ]
    assert judged.results == []  # refused whole: no answer for the duplicates either
    assert judged.refusal is not None
    assert f"{TYPE}/e3" in judged.refusal.detail  # the first arrival that is not a duplicate


def test_judge_closed_raises_the_refusal_the_judgement_gives() -> None:
    original = arrival("e1", {"n": 1})
    changed = arrival("e1", {"n": 2})
    known = {original.identity: admitted(original, 1)}
    judged = judge_after_close(WINDOW, [changed], known)
    assert judged.refusal is not None

    with pytest.raises(WindowClosed) as refused:
        judge_closed(WINDOW, [changed], known)

    assert refused.value.detail == judged.refusal.detail
    assert [r.verdict for r in judge_closed(WINDOW, [original], known)] == [Verdict.DUPLICATE]


# --- the LateArrivals aggregate -----------------------------------------------------------


def test_late_arrivals_have_an_id_of_their_own_never_the_windows() -> None:
    late = LateArrivals.open(WINDOW)

    assert late.id == late_arrivals_uuid(WINDOW) == late_arrivals_uuid(WINDOW)
    assert late.id != window_uuid(WINDOW)
    assert late_arrivals_uuid("other") != late.id
    assert late.window_id == WINDOW
    assert late.mismatches == 0


def test_the_first_late_event_carries_the_window_id_and_links_to_sixty_four_zeros() -> None:
    late = LateArrivals.open(WINDOW)

    [opened] = late.collect_events()

    assert type(opened).__name__ == "LateArrivalsOpened"
    assert opened.originator_version == 1
    assert own_fields(opened) == {"window_id": WINDOW}
    assert opened.prev_digest == GENESIS_DIGEST
    assert late.chain_head == opened.digest


def test_record_late_records_each_mismatch_with_both_hashes_and_the_received_payload() -> None:
    original = arrival("e1", {"n": 1})
    changed = arrival("e1", {"n": 2}, SourceIn(partition="p0", offset=7))
    late = LateArrivals.open(WINDOW)

    with late.one_moment():
        record_late(late, [LateMismatch(changed, original.payload_hash)] * 2)

    events = late.collect_events()
    assert kinds(events) == ["LateArrivalsOpened", "LateMismatchRecorded", "LateMismatchRecorded"]
    assert own_fields(events[1]) == {
        "identity": changed.identity,
        "event_type": TYPE,
        "event_id": "e1",
        "original_hash": original.payload_hash,
        "received_hash": changed.payload_hash,
        "received_payload": {"n": 2},
        "source": {"partition": "p0", "offset": 7},
    }
    assert events[1].timestamp == events[2].timestamp  # one command, one moment
    assert late.mismatches == 2


def test_late_events_form_a_hash_chain_every_digest_of_which_recomputes() -> None:
    original = arrival("e1", {"n": 1})
    late = LateArrivals.open(WINDOW)
    record_late(
        late, [LateMismatch(arrival("e1", {"n": k}), original.payload_hash) for k in (2, 3)]
    )

    events = late.collect_events()

    assert [e.originator_version for e in events] == [1, 2, 3]
    for before, after in itertools.pairwise(events):
        assert after.prev_digest == before.digest
    for e in events:
        assert e.digest == chain_digest(
            e.prev_digest,
            e.originator_version,
            type(e).__name__,
            format_recorded_at(e.timestamp),
            own_fields(e),
        )
    assert late.chain_head == events[-1].digest


def test_an_exact_duplicate_is_never_recorded_as_a_late_mismatch() -> None:
    same = arrival("e1", {"n": 1})
    late = LateArrivals.open(WINDOW)
    late.collect_events()

    with pytest.raises(ValueError, match="not a mismatch"):
        record_late(late, [LateMismatch(same, same.payload_hash)])

    assert late.collect_events() == []
    assert late.mismatches == 0


def test_late_arrivals_replayed_from_stored_events_are_the_same_aggregate() -> None:
    original = arrival("e1", {"n": 1})
    late = LateArrivals.open(WINDOW)
    record_late(late, [LateMismatch(arrival("e1", {"n": 2}), original.payload_hash)])
    mapper: Mapper[UUID] = LedgerMapper(transcoder=JSONStateTranscoder())

    stored = [mapper.to_stored_event(e) for e in late.collect_events()]
    replayed = project_aggregate(None, [mapper.to_domain_event(s) for s in stored])

    assert stored[1].topic == "ledger.domain.late:LateArrivals.LateMismatchRecorded"
    assert isinstance(replayed, LateArrivals)
    assert (replayed.id, replayed.version, replayed.window_id) == (late.id, 2, WINDOW)
    assert replayed.mismatches == 1
    assert replayed.chain_head == late.chain_head
