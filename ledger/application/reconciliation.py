"""Reconciling a window with its bus: settle UNKNOWN publishes by re-publishing with the same
message id (the bus answers the stored sequence if it had it), and adopt the messages the bus
holds but the ledger lacks (a publish whose answer was lost in a crash).

Both go in bounded steps (ADR 0026), each its own command and transaction, so a backlog of any
size never holds the event store's lock for long nor one huge write: other windows' admissions
run between the steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from ledger.admissions import identity_of
from ledger.application.history import HistoryReader
from ledger.application.judging import record_admitted
from ledger.domain import META_KEYS, Window, format_recorded_at
from ledger.errors import BusUnavailable, PublishRefused
from ledger.jcs import CanonicalizationError, canonicalize, sha256_hex
from ledger.ports import (
    BusMessage,
    IdentityIndex,
    IndexChange,
    InspectableBus,
    OutgoingMessage,
    Published,
    Publisher,
)
from ledger.verdicts import IdentityState, Known

# A step's bounds: what one transaction writes (the wedge of issue 11 began near 14 MB).
STEP_MESSAGES = 250
STEP_BYTES = 4 * 1024 * 1024


@dataclass
class Reconciliation:
    """What a reconcile has done so far (its answer, and its progress while it runs)."""

    reconciled: list[str] = field(default_factory=list)
    still_unknown: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    unadoptable: list[dict[str, Any]] = field(default_factory=list)
    # Re-published after the bus's duplicate window: the bus may now hold two messages each.
    past_duplicate_window: list[dict[str, Any]] = field(default_factory=list)
    read_up_to: int = 0  # the last bus sequence adoption has looked at
    bus_messages: int | None = None  # how many the bus holds for the window, once asked

    def add(self, step: Reconciliation) -> None:
        self.reconciled += step.reconciled
        self.still_unknown += step.still_unknown
        self.adopted += step.adopted
        self.unadoptable += step.unadoptable
        self.past_duplicate_window += step.past_duplicate_window
        self.read_up_to, self.bus_messages = step.read_up_to, step.bus_messages

    def as_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "reconciled": self.reconciled,
            "still_unknown": self.still_unknown,
            "adopted": self.adopted,
            "unadoptable": self.unadoptable,
        }
        if self.past_duplicate_window:  # only then: the usual answer keeps its four keys
            answer["past_duplicate_window"] = self.past_duplicate_window
        return answer


Progress = Callable[[Reconciliation], None]


def republish_pending(
    window: Window,
    publisher: Publisher,
    history: HistoryReader,
    changes: list[IndexChange],
    tried: set[str] | None = None,
) -> Reconciliation:
    """One step: re-publish up to STEP_MESSAGES pending identities not `tried` yet. One whose
    PublishUnknown is older than the bus's duplicate window is named in the answer: had the
    bus stored its first message, it now holds a second one (ADR 0028)."""
    tried = tried or set()
    todo = list(islice((i for i in window.pending if i not in tried), STEP_MESSAGES))
    step = Reconciliation()
    if not todo:
        return step
    states = [history.state(history.event_at(window.id, window.pending[i])) for i in todo]
    unknowns = [{k: v for k, v in e.items() if k not in META_KEYS} for e in states]
    messages = [
        OutgoingMessage(
            window.window_id,
            e["identity"],
            e["event_type"],
            e["event_id"],
            e["payload"],
            e["payload_hash"],
        )
        for e in unknowns
    ]
    dedup = duplicate_window_of(publisher)
    now = datetime.now(UTC)
    outcomes = publisher.publish(window.window_id, messages, window.admitted + 1)
    for m, outcome, state in zip(messages, outcomes, states, strict=True):
        if isinstance(outcome, Published):
            window.reconcile(identity=m.identity, offset=outcome.offset)
            step.reconciled.append(m.identity)
            changes.append(_admitted(window, m, outcome.offset))
        else:
            step.still_unknown.append(m.identity)
        since: datetime = state["timestamp"]
        if dedup is not None and (now - since).total_seconds() > dedup:
            step.past_duplicate_window.append(
                {
                    "identity": m.identity,
                    "unknown_since": format_recorded_at(since),
                    "reason": f"re-published more than the bus's duplicate window ({dedup:g} s) "
                    "after its first publish: if the bus stored that one, it now holds two "
                    "messages for the identity (see ledger reconcile --accept-bus-duplicates)",
                }
            )
    return step


def duplicate_window_of(bus: Publisher) -> float | None:
    """How long the bus deduplicates a message id, if it says (None: forever, or unknown)."""
    seconds = getattr(bus, "duplicate_window_seconds", None)
    return float(seconds) if isinstance(seconds, int | float) else None


def adopt_step(
    window: Window,
    bus: Publisher,
    index: IdentityIndex,
    so_far: Reconciliation,
    changes: list[IndexChange],
) -> Reconciliation | None:
    """Adopt the next bounded page of the messages after `so_far.read_up_to`: what this step
    did (the caller adds it to `so_far` once it is saved), or None when there is no more. A
    bus that does not answer ends adoption: what was settled counts."""
    if not isinstance(bus, InspectableBus):
        return None
    progress = Reconciliation(read_up_to=so_far.read_up_to, bus_messages=so_far.bus_messages)
    try:
        if progress.bus_messages is None:
            progress.bus_messages = bus.count(window.window_id)
            if progress.bus_messages == window.admitted:
                return None
        held: list[BusMessage] = []
        size = 0
        for message in bus.messages(window.window_id, after=progress.read_up_to):
            held.append(message)
            size += _size(message)
            if len(held) >= STEP_MESSAGES or size >= STEP_BYTES:
                break
    except (BusUnavailable, PublishRefused):
        return None
    if not held:
        return None
    known = index.lookup_identities(window.window_id, (m.identity for m in held))
    known.update({c.identity: Known(IdentityState.ADMITTED, c.payload_hash) for c in changes})
    dedup = duplicate_window_of(bus)
    for held_message in held:
        obstacle = _obstacle(
            window.window_id, known.get(held_message.identity), held_message, dedup
        )
        if obstacle:
            progress.unadoptable.append(
                {
                    "offset": held_message.offset,
                    "identity": held_message.identity,
                    "reason": obstacle,
                }
            )
        elif obstacle is None:
            m = held_message.message
            assert m is not None
            record_admitted(window, m, held_message.offset, None)
            known[m.identity] = Known(IdentityState.ADMITTED, m.payload_hash, held_message.offset)
            changes.append(_admitted(window, m, held_message.offset))
            progress.adopted.append(m.identity)
    progress.read_up_to = held[-1].offset
    return progress


def _size(message: BusMessage) -> int:
    m = message.message
    # The payload dominates; its stored JSON is about its text length.
    return 512 if m is None else 512 + len(repr(m.payload))


def _admitted(window: Window, m: OutgoingMessage, offset: int) -> IndexChange:
    return IndexChange(window.window_id, m.identity, m.payload_hash, IdentityState.ADMITTED, offset)


def _obstacle(
    window_id: str, k: Known | None, held: BusMessage, dedup: float | None = None
) -> str | None:
    """Why a held message is not adopted: None when it is; "" when the ledger already has its
    identity (nothing to adopt, nothing wrong)."""
    if k is not None and k.state is not IdentityState.ABSENT:
        if k.state is IdentityState.ADMITTED and k.offset not in (None, held.offset):
            return extra_message_reason(k.offset, dedup)
        return ""
    return not_adoptable(window_id, held)


def extra_message_reason(offset: int | None, dedup: float | None) -> str:
    """What reconcile says of a second message for an identity admitted at `offset`."""
    reason = f"second message for an identity admitted at {offset}"
    if dedup is None:
        return reason
    return (
        f"{reason}: the bus's duplicate window ({dedup:g} s) may have ended before a "
        "re-publish; if its body is the admitted payload, an operator can accept it "
        "(ledger reconcile --accept-bus-duplicates)"
    )


def not_adoptable(window_id: str, held: BusMessage) -> str | None:
    """Adopt only what recomputes: the identity and the hash come from the body itself."""
    m = held.message
    if m is None:
        return "message body is not a ledger admission"
    if m.window_id != window_id:
        return f"message names window {m.window_id!r}"
    if identity_of(window_id, m.event_type, m.event_id) != held.identity:
        return "message id is not the identity of its window, event_type and event_id"
    try:
        if sha256_hex(canonicalize(m.payload)) != m.payload_hash:
            return "payload does not hash to its payload_hash"
    except CanonicalizationError as exc:
        return f"payload cannot be canonicalized: {exc}"
    return None
