"""Reconciling a window with its bus: settle UNKNOWN publishes by re-publishing with the same
message id (the bus answers the stored sequence if it had it), and adopt the messages the bus
holds but the ledger lacks (a publish whose answer was lost in a crash)."""

from __future__ import annotations

from typing import Any

from ledger.admissions import identity_of
from ledger.application.history import HistoryReader
from ledger.application.judging import record_admitted
from ledger.domain import Window
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


def republish_pending(
    window: Window, publisher: Publisher, history: HistoryReader, changes: list[IndexChange]
) -> tuple[list[str], list[str]]:
    if not window.pending:
        return [], []
    unknowns = [
        history.fields(history.event_at(window.id, window.pending[i])) for i in window.pending
    ]
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
    outcomes = publisher.publish(window.window_id, messages, window.admitted + 1)
    reconciled, still_unknown = [], []
    for m, outcome in zip(messages, outcomes, strict=True):
        if isinstance(outcome, Published):
            window.reconcile(identity=m.identity, offset=outcome.offset)
            reconciled.append(m.identity)
            changes.append(_admitted(window, m, outcome.offset))
        else:
            still_unknown.append(m.identity)
    return reconciled, still_unknown


def adopt_from_bus(
    window: Window, bus: Publisher, index: IdentityIndex, changes: list[IndexChange]
) -> tuple[list[str], list[dict[str, Any]]]:
    if not isinstance(bus, InspectableBus):
        return [], []
    try:
        if bus.count(window.window_id) == window.admitted:
            return [], []
        held = list(bus.messages(window.window_id))
    except (BusUnavailable, PublishRefused):
        # Adoption waits for a bus that answers; what the re-publish settled still counts.
        return [], []
    known = index.lookup_identities(window.window_id, (m.identity for m in held))
    known.update({c.identity: Known(IdentityState.ADMITTED, c.payload_hash) for c in changes})
    adopted: list[str] = []
    unadoptable: list[dict[str, Any]] = []
    for held_message in held:
        obstacle = _obstacle(window.window_id, known.get(held_message.identity), held_message)
        if obstacle:
            unadoptable.append(
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
            adopted.append(m.identity)
    return adopted, unadoptable


def _admitted(window: Window, m: OutgoingMessage, offset: int) -> IndexChange:
    return IndexChange(window.window_id, m.identity, m.payload_hash, IdentityState.ADMITTED, offset)


def _obstacle(window_id: str, k: Known | None, held: BusMessage) -> str | None:
    """Why a held message is not adopted: None when it is; "" when the ledger already has its
    identity (nothing to adopt, nothing wrong)."""
    if k is not None and k.state is not IdentityState.ABSENT:
        if k.state is IdentityState.ADMITTED and k.offset not in (None, held.offset):
            return f"second message for an identity admitted at {k.offset}"
        return ""
    return _not_adoptable(window_id, held)


def _not_adoptable(window_id: str, held: BusMessage) -> str | None:
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
