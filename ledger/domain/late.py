"""Late arrivals of a closed window (contract s.9, "late drift is never silent").

After close, an arrival whose identity is known with another payload is refused, and nothing is
added to the window's sealed history. It is recorded here instead: one `LateArrivals` aggregate
per window, beside the window (its own id, its own hash chain), so the window's history, its
verification and its receipt stay exactly as they were sealed. Its first event carries the
window's id, as `WindowOpened` does, so the read side names the window of every later event.

Imports only the standard library and `eventsourcing.domain` (through the project's base).
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from ledger.domain.base import ChainedAggregate, own_fields
from ledger.domain.chain import GENESIS_DIGEST

_LATE_NAMESPACE = uuid5(NAMESPACE_URL, "urn:admission-ledger:late-arrivals")


def late_arrivals_uuid(window_id: str) -> UUID:
    """Aggregate id of a window's late arrivals: deterministic, and never a window's id."""
    return uuid5(_LATE_NAMESPACE, window_id)


class LateArrivals(ChainedAggregate):
    """What arrived for one window after it closed and was refused, but must not go unseen."""

    class Event(ChainedAggregate.Event):
        """Every event of a window's late arrivals."""

    class LateArrivalsOpened(Event, ChainedAggregate.Opened):
        window_id: str

    class LateMismatchRecorded(Event):
        """An identity known with one payload arrived after close with another."""

        identity: str
        event_type: str
        event_id: str
        original_hash: str
        received_hash: str
        received_payload: dict[str, Any]
        source: dict[str, Any] | None

        def apply(self, late: LateArrivals) -> None:
            late.mismatches += 1

    def __init__(self, window_id: str) -> None:
        self.window_id = window_id
        self.mismatches = 0

    @classmethod
    def open(cls, window_id: str) -> LateArrivals:
        kwargs = cls._chained(
            cls.LateArrivalsOpened,
            GENESIS_DIGEST,
            1,
            own_fields(cls.LateArrivalsOpened, {"window_id": window_id}),
        )
        return cls._create(cls.LateArrivalsOpened, id=late_arrivals_uuid(window_id), **kwargs)

    def record_mismatch(
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
        if received_hash == original_hash:
            raise ValueError("an exact duplicate is not a mismatch")
        self._trigger(
            self.LateMismatchRecorded,
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
