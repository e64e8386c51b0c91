"""Request and response bodies (contract s.6) as msgspec Structs: they are the OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ledger.admissions import MAX_BATCH, AdmissionIn

Verdict = Literal["ADMITTED", "DUPLICATE", "QUARANTINED", "PUBLISH_UNKNOWN"]
Gate = Literal["OPEN", "BLOCKED", "PASS", "FAIL"]


class AdmissionRequest(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[list[AdmissionIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class AdmissionResultOut(msgspec.Struct):
    event_type: str
    event_id: str
    identity: str
    payload_hash: str
    verdict: Verdict
    offset: int | None


class AdmissionResponse(msgspec.Struct):
    window_id: str
    results: list[AdmissionResultOut]
    counts: dict[str, int]


class Counts(msgspec.Struct):
    admitted: int
    duplicates: int
    quarantined: int
    publish_unknown: int
    reconciled: int
    pending_unknown: int


class BusOffsets(msgspec.Struct):
    first: int | None
    last: int | None


class OffsetRange(msgspec.Struct):
    min: int
    max: int


class Signature(msgspec.Struct):
    alg: Literal["Ed25519"]
    key_id: str
    value: str


class Receipt(msgspec.Struct, omit_defaults=True):
    window_id: str
    status: Literal["OPEN", "CLOSED"]
    gate: Gate
    counts: Counts
    bus_offsets: BusOffsets
    source_offsets: dict[str, OffsetRange]
    opened_at: str
    closed_at: str | None
    events: int
    chain_head: str
    # Set once the window is closed: Ed25519 over JCS of the receipt without signature and gate.
    signature: Signature | msgspec.UnsetType = msgspec.UNSET


class KeyOut(msgspec.Struct):
    key_id: str
    public_key_pem: str


class KeyPage(msgspec.Struct):
    items: list[KeyOut]
    next: str | None


class GateOut(msgspec.Struct):
    window_id: str
    status: Gate
    reasons: list[str]


class WindowItem(msgspec.Struct):
    window_id: str
    status: Literal["OPEN", "CLOSED"]
    gate: Gate
    counts: Counts


class WindowPage(msgspec.Struct):
    items: list[WindowItem]
    next: str | None


class AdmittedEvent(msgspec.Struct):
    offset: int
    event_type: str
    event_id: str
    identity: str
    payload_hash: str
    payload: dict[str, Any]
    source: dict[str, Any] | None
    version: int  # of the event in the window's history that carries the payload


class AdmittedPage(msgspec.Struct):
    items: list[AdmittedEvent]
    next: str | None


class HistoryEvent(msgspec.Struct):
    version: int
    type: str
    recorded_at: str
    fields: dict[str, Any]
    prev_digest: str
    digest: str


class HistoryPage(msgspec.Struct):
    items: list[HistoryEvent]
    next: str | None


class VerifyOut(msgspec.Struct):
    ok: bool
    events: int
    head: str
    first_bad_version: int | None


class Unadoptable(msgspec.Struct):
    offset: int
    identity: str
    reason: str


class PastDuplicateWindow(msgspec.Struct):
    identity: str
    unknown_since: str
    reason: str


class ReconcileOut(msgspec.Struct, omit_defaults=True):
    reconciled: list[str]
    still_unknown: list[str]
    adopted: list[str]
    unadoptable: list[Unadoptable]
    # Only when some identity was re-published after the bus's duplicate window (ADR 0028).
    past_duplicate_window: list[PastDuplicateWindow] = []


class AcceptBusDuplicatesIn(msgspec.Struct, forbid_unknown_fields=True):
    """Who accepts (recorded with the caller's token scopes) and why; both optional."""

    by: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)] | None = None


class AcceptedDuplicate(msgspec.Struct):
    sequence: int  # the extra message's stream sequence
    identity: str
    offset: int  # where the identity was admitted
    payload_hash: str


class RefusedDuplicate(msgspec.Struct):
    sequence: int
    identity: str
    offset: int | None
    reason: str


class AcceptBusDuplicatesOut(msgspec.Struct):
    window_id: str
    accepted: list[AcceptedDuplicate]
    refused: list[RefusedDuplicate]
    already_accepted: int  # extras accepted before this call


class QuarantineItem(msgspec.Struct):
    window_id: str
    event_type: str
    event_id: str
    identity: str
    original_hash: str
    original_payload: dict[str, Any] | None
    received_hash: str
    received_payload: dict[str, Any]
    occurrences: int
    first_seen: str
    last_seen: str
    # Arrived after close: refused (409 window_closed), kept out of the sealed history (s.9).
    late: bool


class QuarantinePage(msgspec.Struct):
    items: list[QuarantineItem]
    next: str | None


class HealthPart(msgspec.Struct, omit_defaults=True):
    """One part the service depends on, named by kind only (never a host, a path or a URL);
    `detail` says what kind of failure when it is down."""

    ok: bool
    kind: str  # storage: "postgresql" or "sqlite"; bus: "nats" or "embedded" (the storage)
    detail: str | None = None


class Health(msgspec.Struct, omit_defaults=True):
    """`ok`, `degraded` (the bus is down) or `unavailable` (503: the storage is down). With
    LEDGER_API_TOKENS set, the parts only for a token with the `read` scope."""

    status: Literal["ok", "degraded", "unavailable"]
    storage: HealthPart | None = None
    bus: HealthPart | None = None


class ErrorBody(msgspec.Struct):
    """Every error: a code clients switch on and a sentence people read (plus context)."""

    error: str
    detail: str


class GateNotPassed(msgspec.Struct):
    error: Literal["gate_not_passed"]
    detail: str
    gate: GateOut
