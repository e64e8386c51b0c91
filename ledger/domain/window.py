"""The run-window aggregate and its append-only events.

Imports only the standard library and `eventsourcing.domain` (through the project's base).
The window's state is small and fixed in size whatever the number of admissions: counters, the
pending-unknown identities, offset ranges, the chain head. The identity index lives outside, in
a table written in the same transaction as the events.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from ledger.domain.base import ChainedAggregate, own_fields
from ledger.domain.chain import GENESIS_DIGEST, format_recorded_at
from ledger.domain.forms import AdmittedForm, admitted_form
from ledger.errors import PublishUnknownPending, WindowClosed
from ledger.jcs import MAX_SAFE_INTEGER

_WINDOW_NAMESPACE = uuid5(NAMESPACE_URL, "urn:admission-ledger:window")


# A name-based UUID is a SHA-1 and a UUID object: each group of requests asks for its windows'
# several times, and a service writes to few windows at a time.
@lru_cache(maxsize=4096)
def window_uuid(window_id: str) -> UUID:
    """Aggregate id of a window: deterministic, so every process finds the same aggregate."""
    return uuid5(_WINDOW_NAMESPACE, window_id)


def _bounds(current: list[int] | None, value: int) -> list[int]:
    if current is None:
        return [value, value]
    return [min(current[0], value), max(current[1], value)]


class Window(ChainedAggregate):
    """One run window. OPEN until closed; a CLOSED window never reopens."""

    class Event(ChainedAggregate.Event):
        """Every event of a window."""

    class WindowOpened(Event, ChainedAggregate.Opened):
        window_id: str

    class EventAdmitted(Event):
        identity: str
        event_type: str
        event_id: str
        payload: dict[str, Any]
        payload_hash: str
        offset: int
        source: dict[str, Any] | None

        def apply(self, window: Window) -> None:
            window.admitted += 1
            window._note_offset(self.offset)
            window._note_source(self.source)

    class DuplicateAbsorbed(Event):
        """Version 2 adds `source`: where the producer read the repeat, for audit."""

        identity: str
        payload_hash: str
        offset: int
        source: dict[str, Any] | None = None

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # Only the object is upcast: history and verify read the stored v1 state, so the
            # digests recorded over v1 fields still verify.
            state["source"] = None

        def apply(self, window: Window) -> None:
            window.duplicates += 1

    class MismatchQuarantined(Event):
        identity: str
        event_type: str
        event_id: str
        original_hash: str
        received_hash: str
        received_payload: dict[str, Any]
        source: dict[str, Any] | None

        def apply(self, window: Window) -> None:
            window.quarantined += 1

    class PublishUnknown(Event):
        identity: str
        event_type: str
        event_id: str
        payload: dict[str, Any]
        payload_hash: str
        reason: str
        source: dict[str, Any] | None

        def apply(self, window: Window) -> None:
            window.publish_unknown += 1
            window.own_pending()[self.identity] = self.originator_version
            window._note_source(self.source)

    class PublishReconciled(Event):
        identity: str
        outcome: str  # "published" or "not_published"
        offset: int | None

        def apply(self, window: Window) -> None:
            window.reconciled += 1
            del window.own_pending()[self.identity]
            if self.outcome == "published":
                assert self.offset is not None
                window.admitted += 1
                window._note_offset(self.offset)

    class BusDuplicateAccepted(Event):
        """An operator accepted an extra bus message (`sequence`) for an identity the window
        admitted at `offset`, its body hashing to the admitted `payload_hash`: the bus's
        duplicate window had ended before the re-publish (ADR 0028)."""

        identity: str
        sequence: int
        offset: int
        payload_hash: str
        accepted_by: str
        reason: str

        def apply(self, window: Window) -> None:
            window.bus_duplicates_accepted += 1

    class WindowClosed(Event):
        summary: dict[str, Any]

        def apply(self, window: Window) -> None:
            window.status = "CLOSED"
            window.closed_at = format_recorded_at(self.timestamp)
            window.summary = self.summary

    # For a window made from a snapshot written before the counter existed.
    bus_duplicates_accepted = 0
    # `pending` is shared with a copy (`copy_window`, made by every command): copied on its
    # next change, not on every copy, as it may hold a whole outage's admissions (ADR 0045).
    pending_shared = False

    def __init__(self, window_id: str) -> None:
        self.window_id = window_id
        self.status = "OPEN"
        self.admitted = 0
        self.duplicates = 0
        self.quarantined = 0
        self.publish_unknown = 0
        self.reconciled = 0
        self.bus_duplicates_accepted = 0  # extra bus messages an operator accepted
        # identity -> version of its PublishUnknown event, while its outcome is UNKNOWN
        self.pending: dict[str, int] = {}
        self.bus_offsets: list[int] | None = None
        self.source_offsets: dict[str, list[int]] = {}
        self.summary: dict[str, Any] | None = None
        self.closed_at: str | None = None

    def own_pending(self) -> dict[str, int]:
        """`pending`, to be changed: copied first if a copy of the window shares it."""
        if self.pending_shared:
            self.pending = dict(self.pending)
            self.pending_shared = False
        return self.pending

    @classmethod
    def open(cls, window_id: str) -> Window:
        kwargs = cls._chained(
            cls.WindowOpened,
            GENESIS_DIGEST,
            1,
            own_fields(cls.WindowOpened, {"window_id": window_id}),
        )
        return cls._create(cls.WindowOpened, id=window_uuid(window_id), **kwargs)

    # --- state helpers ------------------------------------------------------------------

    def _note_offset(self, offset: int) -> None:
        bounds = self.bus_offsets
        if bounds is None:
            self.bus_offsets = [offset, offset]
        elif offset < bounds[0]:
            bounds[0] = offset
        elif offset > bounds[1]:
            bounds[1] = offset

    def _note_source(self, source: dict[str, Any] | None) -> None:
        if source is not None:
            partition = source["partition"]
            self.source_offsets[partition] = _bounds(
                self.source_offsets.get(partition), source["offset"]
            )

    @property
    def is_closed(self) -> bool:
        return self.status == "CLOSED"

    @property
    def opened_at(self) -> str:
        return format_recorded_at(self.created_on)

    def counts(self) -> dict[str, int]:
        return {
            "admitted": self.admitted,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "publish_unknown": self.publish_unknown,
            "reconciled": self.reconciled,
            "pending_unknown": len(self.pending),
        }

    # --- commands -----------------------------------------------------------------------

    def _require_open(self) -> None:
        if self.is_closed:
            raise WindowClosed(f"window {self.window_id!r} is closed")

    def admit(
        self,
        *,
        identity: str,
        event_type: str,
        event_id: str,
        payload: dict[str, Any],
        payload_hash: str,
        offset: int,
        source: dict[str, Any] | None,
        canonical_payload: bytes | None = None,
        form: AdmittedForm | None = None,
    ) -> None:
        """`canonical_payload`: `canonicalize(payload)`, when the caller has it already;
        `form`: `admitted_form(...)` of these very values, made ahead."""
        self._require_open()
        if (
            form is not None
            and type(offset) is int
            and -MAX_SAFE_INTEGER <= offset <= MAX_SAFE_INTEGER
        ):
            # An integer in the safe range is its own canonical text.
            canonical_fields: bytes | None = b"%b%d%b" % (form.head, offset, form.tail)
        else:
            canonical_fields = None
        # Every field of EventAdmitted, given directly: this runs once per admission.
        self._trigger(
            self.EventAdmitted,
            {
                "identity": identity,
                "event_type": event_type,
                "event_id": event_id,
                "payload": payload,
                "payload_hash": payload_hash,
                "offset": offset,
                "source": source,
            },
            None if canonical_payload is None else {"payload": canonical_payload},
            canonical_fields,
        )

    admitted_form = staticmethod(admitted_form)

    def absorb_duplicate(
        self,
        *,
        identity: str,
        payload_hash: str,
        offset: int,
        source: dict[str, Any] | None = None,
    ) -> None:
        self._require_open()
        self._trigger(
            self.DuplicateAbsorbed,
            {
                "identity": identity,
                "payload_hash": payload_hash,
                "offset": offset,
                "source": source,
            },
        )

    def quarantine(
        self,
        *,
        identity: str,
        event_type: str,
        event_id: str,
        original_hash: str,
        received_hash: str,
        received_payload: dict[str, Any],
        source: dict[str, Any] | None,
        canonical_payload: bytes | None = None,
    ) -> None:
        """`canonical_payload`: `canonicalize(received_payload)`, when the caller has it."""
        self._require_open()
        self._trigger(
            self.MismatchQuarantined,
            {
                "identity": identity,
                "event_type": event_type,
                "event_id": event_id,
                "original_hash": original_hash,
                "received_hash": received_hash,
                "received_payload": received_payload,
                "source": source,
            },
            None if canonical_payload is None else {"received_payload": canonical_payload},
        )

    def record_publish_unknown(
        self,
        *,
        identity: str,
        event_type: str,
        event_id: str,
        payload: dict[str, Any],
        payload_hash: str,
        reason: str,
        source: dict[str, Any] | None,
    ) -> None:
        self._require_open()
        self.trigger_event(
            self.PublishUnknown,
            identity=identity,
            event_type=event_type,
            event_id=event_id,
            payload=payload,
            payload_hash=payload_hash,
            reason=reason,
            source=source,
        )

    def reconcile(self, *, identity: str, offset: int | None) -> None:
        """Resolve an UNKNOWN publish: `offset` when the bus has it, None when proven absent."""
        self._require_open()
        if identity not in self.pending:
            raise ValueError(f"identity {identity} is not pending")
        self.trigger_event(
            self.PublishReconciled,
            identity=identity,
            outcome="published" if offset is not None else "not_published",
            offset=offset,
        )

    def accept_bus_duplicate(
        self,
        *,
        identity: str,
        sequence: int,
        offset: int,
        payload_hash: str,
        accepted_by: str,
        reason: str,
    ) -> None:
        """Record an operator's acceptance of the extra bus message `sequence` for an identity
        admitted at `offset` (the caller checked the bus and the body)."""
        self._require_open()
        if sequence == offset:
            raise ValueError("the admitted message itself is not an extra one")
        self.trigger_event(
            self.BusDuplicateAccepted,
            identity=identity,
            sequence=sequence,
            offset=offset,
            payload_hash=payload_hash,
            accepted_by=accepted_by,
            reason=reason,
        )

    def close(self, *, chain_verified: bool = False, first_bad_version: int | None = None) -> None:
        """Close with the summary the read side must agree with.

        `chain_verified` says whether the stored chain was recomputed and matched this window's
        head just before closing; the gate cannot PASS without it.
        """
        self._require_open()
        if self.pending:
            raise PublishUnknownPending(sorted(self.pending))
        summary = {
            "counts": self.counts(),
            "bus_offsets": self.bus_offset_range(),
            "source_offsets": self.source_offset_ranges(),
            "opened_at": self.opened_at,
            "events": self.version + 1,  # the history's length, WindowClosed included
            "chain_verified": chain_verified,
            "first_bad_version": first_bad_version,
        }
        if self.bus_duplicates_accepted:  # absent otherwise: ordinary summaries keep their shape
            summary["bus_duplicates_accepted"] = self.bus_duplicates_accepted
        self.trigger_event(self.WindowClosed, summary=summary)

    def bus_offset_range(self) -> dict[str, int | None]:
        first, last = self.bus_offsets if self.bus_offsets else (None, None)
        return {"first": first, "last": last}

    def source_offset_ranges(self) -> dict[str, dict[str, int]]:
        return {p: {"min": lo, "max": hi} for p, (lo, hi) in sorted(self.source_offsets.items())}
