"""Judging arrivals (contract s.3): what one arrival means for its window, given what the
ledger knew of its identity and what the bus answered. Pure: no storage, no bus; the unit
tests drive it with a `Window` alone (and, after close, a `LateArrivals`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from ledger.admissions import Admission
from ledger.application.results import AdmissionResult
from ledger.domain import AdmittedForm, Window
from ledger.domain.late import LateArrivals
from ledger.errors import WindowClosed
from ledger.ports import Message, Published, PublishOutcome, Superseded
from ledger.verdicts import Action, IdentityState, Known, Verdict, classify

# identity -> (the admission it was made from, the form of its EventAdmitted)
Forms = dict[str, tuple[Admission, AdmittedForm]]
# What an arrival means: its verdict, its offset, and the identity's new state (None: unchanged)
Judgement = tuple[Verdict, int | None, Known | None]


def admitted_form(a: Admission) -> AdmittedForm:
    """The canonical text of the EventAdmitted this admission would make (around its offset)."""
    assert a.canonical_payload is not None
    return Window.admitted_form(
        identity=a.identity,
        event_type=a.event_type,
        event_id=a.event_id,
        payload_hash=a.payload_hash,
        source=a.source,
        canonical_payload=a.canonical_payload,
    )


def record_admitted(
    window: Window,
    m: Message,
    offset: int,
    source: dict[str, Any] | None,
    form: AdmittedForm | None = None,
) -> None:
    """Record an identity as admitted at `offset`: an arrival, or a message the bus holds."""
    window.admit(
        identity=m.identity,
        event_type=m.event_type,
        event_id=m.event_id,
        payload=m.payload,
        payload_hash=m.payload_hash,
        offset=offset,
        source=source,
        canonical_payload=m.canonical_payload if isinstance(m, Admission) else None,
        form=form,
    )


def _mismatch(a: Admission, original_hash: str) -> dict[str, Any]:
    """What a recorded mismatch holds: the arrival, and the hash of the payload that stays."""
    return {
        "identity": a.identity,
        "event_type": a.event_type,
        "event_id": a.event_id,
        "original_hash": original_hash,
        "received_hash": a.payload_hash,
        "received_payload": a.payload,
        "source": a.source,
        "canonical_payload": a.canonical_payload,
    }


def record_quarantined(window: Window, a: Admission, original_hash: str) -> None:
    """Record an arrival whose identity is known with another payload (the first stays)."""
    window.quarantine(**_mismatch(a, original_hash))


def to_publish(admissions: Iterable[Admission], known: dict[str, Known]) -> dict[str, Admission]:
    """The first arrival of each identity that needs the bus, in order."""
    wanted: dict[str, Admission] = {}
    for a in admissions:
        if classify(known.get(a.identity), a.payload_hash) is Action.PUBLISH:
            wanted.setdefault(a.identity, a)
    return wanted


def judge_arrival(
    window: Window,
    a: Admission,
    before: Known | None,
    outcomes: dict[str, PublishOutcome],
    forms: Forms | None = None,
) -> Judgement:
    """Record what one arrival means; return its verdict, offset and the new known state.

    Each identity's bus outcome is used once: a same-hash repeat later in the batch finds the
    identity ADMITTED (a duplicate) or still UNKNOWN (nothing new)."""
    if before is None and type(outcome := outcomes.get(a.identity)) is Published:
        # The common case, decided without the general walk below: a new identity the
        # bus acknowledged (what the walk would conclude, in fewer steps per admission).
        del outcomes[a.identity]
        made = forms.get(a.identity) if forms else None
        form = made[1] if made is not None and made[0] is a else None
        record_admitted(window, a, outcome.offset, a.source, form)
        return (
            Verdict.ADMITTED,
            outcome.offset,
            Known(IdentityState.ADMITTED, a.payload_hash, outcome.offset),
        )
    action = classify(before, a.payload_hash)
    if action is Action.ABSORB:
        assert before is not None and before.offset is not None
        window.absorb_duplicate(
            identity=a.identity,
            payload_hash=a.payload_hash,
            offset=before.offset,
            source=a.source,
        )
        return Verdict.DUPLICATE, before.offset, None
    if action is Action.QUARANTINE:
        assert before is not None
        record_quarantined(window, a, before.payload_hash)
        return Verdict.QUARANTINED, None, None
    published = outcomes.pop(a.identity, None)
    if published is None:
        return Verdict.PUBLISH_UNKNOWN, None, None
    was_unknown = before is not None and before.state is IdentityState.UNKNOWN
    return _judge_outcome(window, a, published, was_unknown)


def _judge_outcome(
    window: Window, a: Admission, outcome: PublishOutcome, was_unknown: bool
) -> Judgement:
    """An arrival that needed the bus, by what the bus answered."""
    if isinstance(outcome, Published):
        if was_unknown:
            window.reconcile(identity=a.identity, offset=outcome.offset)
        else:
            record_admitted(window, a, outcome.offset, a.source)
        admitted = Known(IdentityState.ADMITTED, a.payload_hash, outcome.offset)
        return Verdict.ADMITTED, outcome.offset, admitted
    if isinstance(outcome, Superseded) and outcome.original.message is not None:
        original = outcome.original.message
        if was_unknown:
            return Verdict.PUBLISH_UNKNOWN, None, None
        # Another writer published this identity first with another payload and has not
        # recorded it here: the bus's message is the truth; adopt it, judge ours against it.
        record_admitted(window, original, outcome.offset, None)
        record_quarantined(window, a, original.payload_hash)
        adopted = Known(IdentityState.ADMITTED, original.payload_hash, outcome.offset)
        return Verdict.QUARANTINED, None, adopted
    if was_unknown:
        return Verdict.PUBLISH_UNKNOWN, None, None
    # Unknown, or the bus holds a message under this id whose body is not a ledger admission:
    # either way the outcome is not known, and the window must not close over it (fail-closed).
    window.record_publish_unknown(
        identity=a.identity,
        event_type=a.event_type,
        event_id=a.event_id,
        payload=a.payload,
        payload_hash=a.payload_hash,
        reason=_reason(outcome),
        source=a.source,
    )
    return Verdict.PUBLISH_UNKNOWN, None, Known(IdentityState.UNKNOWN, a.payload_hash)


def _reason(outcome: PublishOutcome) -> str:
    if isinstance(outcome, Superseded):
        return (
            f"the bus holds a message under this id at {outcome.offset} whose body is not a "
            "ledger admission"
        )
    assert not isinstance(outcome, Published)
    return outcome.reason


class LateMismatch(NamedTuple):
    """An arrival after close whose identity is known with another payload (contract s.9)."""

    admission: Admission
    original_hash: str


class ClosedJudgement(NamedTuple):
    """What a batch means for a closed window: the answers when every arrival is an exact
    duplicate, else the refusal; and, either way, the late mismatches to record outside the
    window's sealed history (there are none when nothing is refused)."""

    results: list[AdmissionResult]
    mismatches: list[LateMismatch]
    refusal: WindowClosed | None


def judge_after_close(
    window_id: str, admissions: Sequence[Admission], known: dict[str, Known]
) -> ClosedJudgement:
    """After close only exact duplicates are answered; anything else refuses the whole batch.
    Every arrival whose identity is known with another payload is a late mismatch (a repeat
    in the batch is another one); a new identity is refused and is not one."""
    results: list[AdmissionResult] = []
    mismatches: list[LateMismatch] = []
    refused: Admission | None = None
    for a in admissions:
        k = known.get(a.identity)
        if k is not None and k.payload_hash != a.payload_hash:
            mismatches.append(LateMismatch(a, k.payload_hash))
        elif k is not None and k.state is IdentityState.ADMITTED:
            results.append(
                AdmissionResult(
                    a.event_type,
                    a.event_id,
                    a.identity,
                    a.payload_hash,
                    Verdict.DUPLICATE,
                    k.offset,
                )
            )
            continue
        if refused is None:
            refused = a
    if refused is None:
        return ClosedJudgement(results, mismatches, None)
    refusal = WindowClosed(
        f"window {window_id!r} is closed; only exact duplicates are answered "
        f"({refused.event_type}/{refused.event_id} is not one)"
    )
    return ClosedJudgement([], mismatches, refusal)


def judge_closed(
    window_id: str, admissions: Sequence[Admission], known: dict[str, Known]
) -> list[AdmissionResult]:
    """After close only exact duplicates are answered (raises `WindowClosed` otherwise), and
    nothing is recorded in the window."""
    judged = judge_after_close(window_id, admissions, known)
    if judged.refusal is not None:
        raise judged.refusal
    return judged.results


def record_late(late: LateArrivals, mismatches: Iterable[LateMismatch]) -> None:
    """Record late mismatches in the window's late arrivals (the first payload stays the truth)."""
    for a, original_hash in mismatches:
        late.record_mismatch(**_mismatch(a, original_hash))
