"""An operator's acceptance of extra bus messages (ADR 0028).

A re-publish after the bus's duplicate window has ended is stored again: the bus then holds two
messages for one identity and close is refused (`bus_ledger_mismatch`), rightly. The way forward
is recorded, never guessed: for each extra message whose identity the window admitted at
another offset and whose body is the admitted payload, one `BusDuplicateAccepted` names the
extra sequence, the admitted offset, the payload hash, who accepted it and why; close then
expects `admitted + accepted extras` messages. An extra with another payload is refused.

In bounded steps (ADR 0026), each its own command and transaction. Idempotent: an extra
accepted before is not recorded again (the sequences accepted so far are read from the history
when the window's counter says there are some this command has not seen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.application.history import HistoryReader
from ledger.application.reconciliation import STEP_BYTES, STEP_MESSAGES, not_adoptable
from ledger.domain import Window
from ledger.errors import WindowClosed
from ledger.jcs import CanonicalizationError, canonicalize, sha256_hex
from ledger.ports import BusMessage, IdentityIndex, InspectableBus, Publisher
from ledger.verdicts import IdentityState, Known

DEFAULT_REASON = "bus duplicate window ended"
ACCEPTED_TYPE = Window.BusDuplicateAccepted.__name__


@dataclass
class AcceptanceStep:
    """What one step did (merged into the answer once its transaction is saved)."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    read_up_to: int = 0


@dataclass
class BusDuplicateAcceptance:
    """One run of the command on one window: its inputs, progress and answer."""

    window_id: str
    accepted_by: str
    reason: str
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    already_accepted: int | None = None  # the window's count before this run
    read_up_to: int = 0
    sequences: set[int] = field(default_factory=set)  # accepted extras known to this run
    done: bool = False

    def add(self, step: AcceptanceStep) -> None:
        self.accepted += step.accepted
        self.refused += step.refused
        self.sequences.update(a["sequence"] for a in step.accepted)
        self.read_up_to = step.read_up_to

    def as_json(self) -> dict[str, Any]:
        return {
            "window_id": self.window_id,
            "accepted": self.accepted,
            "refused": self.refused,
            "already_accepted": self.already_accepted or 0,
        }


def accept_step(
    window: Window,
    bus: Publisher,
    index: IdentityIndex,
    history: HistoryReader,
    run: BusDuplicateAcceptance,
) -> AcceptanceStep | None:
    """Judge the next bounded page of the window's bus messages after `run.read_up_to`,
    recording a `BusDuplicateAccepted` on `window` for each acceptable extra: what this step
    did, or None when there is nothing more to read."""
    if not _worth_reading(window, bus, run) or not isinstance(bus, InspectableBus):
        return None
    if len(run.sequences) != window.bus_duplicates_accepted:
        run.sequences = accepted_sequences(history, window.window_id)
    held = _page(bus, window.window_id, run.read_up_to)
    if not held:
        return None
    step = AcceptanceStep(read_up_to=held[-1].offset)
    known = index.lookup_identities(window.window_id, (m.identity for m in held))
    seen = set(run.sequences)
    for message in held:
        k = known.get(message.identity)
        if k is None or k.state is not IdentityState.ADMITTED:
            continue  # not an extra: reconcile adopts (or names) what the ledger lacks
        if k.offset in (None, message.offset) or message.offset in seen:
            continue  # the admitted message itself, or an extra accepted before
        why = refusal(window.window_id, message, k)
        if why is not None:
            step.refused.append(
                {
                    "sequence": message.offset,
                    "identity": message.identity,
                    "offset": k.offset,
                    "reason": why,
                }
            )
            continue
        assert k.offset is not None
        window.accept_bus_duplicate(
            identity=message.identity,
            sequence=message.offset,
            offset=k.offset,
            payload_hash=k.payload_hash,
            accepted_by=run.accepted_by,
            reason=run.reason,
        )
        seen.add(message.offset)
        step.accepted.append(
            {
                "sequence": message.offset,
                "identity": message.identity,
                "offset": k.offset,
                "payload_hash": k.payload_hash,
            }
        )
    return step


def _worth_reading(window: Window, bus: Publisher, run: BusDuplicateAcceptance) -> bool:
    """Whether to read the bus on: refused on a closed window; on the first step, not when the
    bus cannot be read or holds exactly what the window accounts for."""
    first = run.already_accepted is None
    if window.is_closed:
        if first:
            raise WindowClosed(f"window {window.window_id!r} is closed")
        return False  # closed by someone else between two steps: what was recorded stands
    if not first:
        return True
    run.already_accepted = window.bus_duplicates_accepted
    if not isinstance(bus, InspectableBus):
        return False  # a bus that cannot be read holds no extras we could name
    on_bus = bus.count(window.window_id)
    return on_bus != window.admitted + window.bus_duplicates_accepted


def refusal(window_id: str, message: BusMessage, known: Known) -> str | None:
    """Why an extra message is not accepted (None: it is): its body must be a ledger admission
    of this identity whose payload hashes to the admitted payload hash."""
    why = not_adoptable(window_id, message)
    if why is not None:
        return why
    m = message.message
    assert m is not None
    try:
        received = sha256_hex(canonicalize(m.payload))
    except CanonicalizationError as exc:  # checked by not_adoptable; kept for the types
        return f"payload cannot be canonicalized: {exc}"
    if received != known.payload_hash:
        return (
            f"its payload hashes to {received}, not to the admitted payload hash "
            f"{known.payload_hash}: another payload is never accepted as a duplicate"
        )
    return None


def accepted_sequences(history: HistoryReader, window_id: str) -> set[int]:
    """The extra sequences the window's history has accepted (its other events are skipped
    by their topic, not decoded)."""
    return {
        int(history.fields(stored)["sequence"])
        for stored in history.stored_events(window_id)
        if stored.topic.endswith(ACCEPTED_TYPE)
    }


def _page(bus: InspectableBus, window_id: str, after: int) -> list[BusMessage]:
    held: list[BusMessage] = []
    size = 0
    for message in bus.messages(window_id, after=after):
        held.append(message)
        m = message.message
        size += 512 if m is None else 512 + len(repr(m.payload))
        if len(held) >= STEP_MESSAGES or size >= STEP_BYTES:
            break
    return held
