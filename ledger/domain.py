"""The run-window aggregate and its append-only events.

Imports only the standard library and `eventsourcing.domain` (plus the stdlib-only JCS module).
The window's state is small and fixed in size whatever the number of admissions: counters, the
pending-unknown identities, offset ranges, the chain head. The identity index lives outside, in
a table written in the same transaction as the events.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any, ClassVar, NamedTuple
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, OriginatorIDError, OriginatorVersionError

from ledger.errors import PublishUnknownPending, WindowClosed
from ledger.jcs import MAX_SAFE_INTEGER, Canonical, canonical_string, canonicalize

GENESIS_DIGEST = "0" * 64
_ZERO = timedelta(0)
_WINDOW_NAMESPACE = uuid5(NAMESPACE_URL, "urn:admission-ledger:window")

# Event attributes that are bookkeeping, not the event's own data ("fields" in the contract).
META_KEYS = frozenset(
    {
        "originator_id",
        "originator_version",
        "timestamp",
        "prev_digest",
        "digest",
        "originator_topic",
        "class_version",
    }
)


def window_uuid(window_id: str) -> UUID:
    """Aggregate id of a window: deterministic, so every process finds the same aggregate."""
    return uuid5(_WINDOW_NAMESPACE, window_id)


def format_recorded_at(timestamp: datetime) -> str:
    """YYYY-MM-DDTHH:MM:SS.ffffffZ, always with microseconds."""
    utc = timestamp if timestamp.utcoffset() == _ZERO else timestamp.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def chain_digest(
    prev_digest: str, version: int, type_name: str, recorded_at: str, fields: dict[str, Any]
) -> str:
    """digest = sha256(prev_digest + JCS({version, type, recorded_at, fields})) (contract s.2).

    The envelope is written by hand around the canonical fields: its keys are already in
    RFC 8785 order, and `recorded_at` and `type` are ASCII text that needs no escaping (the
    tests hold this to the `rfc8785` package). `fields` may hold `Canonical` leaves.
    """
    return chain_digest_of(prev_digest, version, type_name, recorded_at, canonicalize(fields))


def chain_digest_of(
    prev_digest: str, version: int, type_name: str, recorded_at: str, canonical_fields: bytes
) -> str:
    """`chain_digest` with the fields given by their canonical bytes."""
    digest = sha256(f'{prev_digest}{{"fields":'.encode("ascii"))
    digest.update(canonical_fields)
    digest.update(
        f',"recorded_at":"{recorded_at}","type":"{type_name}","version":{version}}}'.encode("ascii")
    )
    return digest.hexdigest()


class AdmittedForm(NamedTuple):
    """The canonical fields of an `EventAdmitted` made before its offset is known: they are
    `head + offset + tail`. Made ahead (while the index is read), the chain digest of the
    admission costs no canonicalization on the write path."""

    head: bytes
    tail: bytes


# Per event class: its own data fields as (name, default, default_factory).
_DATA_FIELDS: dict[type[Any], tuple[tuple[str, Any, Any], ...]] = {}


def _data_fields(event_class: type[Any]) -> tuple[tuple[str, Any, Any], ...]:
    found = _DATA_FIELDS.get(event_class)
    if found is None:
        found = tuple(
            (f.name, f.default, f.default_factory)
            for f in dataclasses.fields(event_class)
            if f.name not in META_KEYS
        )
        _DATA_FIELDS[event_class] = found
    return found


def _own_fields(event_class: type[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The event's own data: every field, from `kwargs` or its default."""
    own: dict[str, Any] = {}
    given = 0
    for name, default, default_factory in _data_fields(event_class):
        if name in kwargs:
            own[name] = kwargs[name]
            given += 1
        elif default is not dataclasses.MISSING:
            own[name] = default
        elif default_factory is not dataclasses.MISSING:
            own[name] = default_factory()
    if given != len(kwargs):
        unknown = sorted(kwargs.keys() - own.keys())
        raise TypeError(f"{event_class.__name__} has no fields {unknown}")
    return own


def _bounds(current: list[int] | None, value: int) -> list[int]:
    if current is None:
        return [value, value]
    return [min(current[0], value), max(current[1], value)]


class Window(Aggregate):
    """One run window. OPEN until closed; a CLOSED window never reopens."""

    class Event(Aggregate.Event):
        prev_digest: str
        digest: str

        def mutate(self, aggregate: Any) -> Any:
            # The library's checks and bookkeeping, inline (this runs once per admission), and
            # the chain head, which every event moves, so a replayed window has it too.
            if self.originator_id is not aggregate.id and self.originator_id != aggregate.id:
                raise OriginatorIDError(self.originator_id, aggregate.id)
            next_version = aggregate.version + 1
            if self.originator_version != next_version:
                raise OriginatorVersionError(self.originator_version, next_version)
            self.apply(aggregate)
            aggregate.version = self.originator_version
            aggregate.modified_on = self.timestamp
            aggregate.chain_head = self.digest
            return aggregate

    class WindowOpened(Event, Aggregate.Created):
        window_id: str

        def mutate(self, aggregate: Any) -> Any:
            window = Aggregate.Created.mutate(self, aggregate)
            assert window is not None
            window.chain_head = self.digest
            return window

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
            window.pending[self.identity] = self.originator_version
            window._note_source(self.source)

    class PublishReconciled(Event):
        identity: str
        outcome: str  # "published" or "not_published"
        offset: int | None

        def apply(self, window: Window) -> None:
            window.reconciled += 1
            del window.pending[self.identity]
            if self.outcome == "published":
                assert self.offset is not None
                window.admitted += 1
                window._note_offset(self.offset)

    class WindowClosed(Event):
        summary: dict[str, Any]

        def apply(self, window: Window) -> None:
            window.status = "CLOSED"
            window.closed_at = format_recorded_at(self.timestamp)
            window.summary = self.summary

    # --- construction -------------------------------------------------------------------

    chain_head: str  # set by every event's mutate()

    def __init__(self, window_id: str) -> None:
        self.window_id = window_id
        self.status = "OPEN"
        self.admitted = 0
        self.duplicates = 0
        self.quarantined = 0
        self.publish_unknown = 0
        self.reconciled = 0
        # identity -> version of its PublishUnknown event, while its outcome is UNKNOWN
        self.pending: dict[str, int] = {}
        self.bus_offsets: list[int] | None = None
        self.source_offsets: dict[str, list[int]] = {}
        self.summary: dict[str, Any] | None = None
        self.closed_at: str | None = None

    @classmethod
    def open(cls, window_id: str) -> Window:
        kwargs = cls._chained(
            cls.WindowOpened,
            GENESIS_DIGEST,
            1,
            _own_fields(cls.WindowOpened, {"window_id": window_id}),
        )
        return cls._create(cls.WindowOpened, id=window_uuid(window_id), **kwargs)

    @staticmethod
    def _chained(
        event_class: type[Any],
        prev_digest: str,
        version: int,
        fields: dict[str, Any],
        moment: tuple[datetime, str] | None = None,
        canonical: dict[str, bytes] | None = None,
        canonical_fields: bytes | None = None,
    ) -> dict[str, Any]:
        """`fields` plus the event's timestamp and chain links (added to `fields` itself).

        `canonical`: some fields by their canonical bytes; `canonical_fields`: all of them."""
        if moment is None:
            timestamp = event_class.create_timestamp()
            recorded_at = format_recorded_at(timestamp)
        else:
            timestamp, recorded_at = moment
        if canonical_fields is None:
            hashed = fields
            if canonical:
                hashed = fields.copy()
                for name, data in canonical.items():
                    hashed[name] = Canonical(data)
            canonical_fields = canonicalize(hashed)
        digest = chain_digest_of(
            prev_digest, version, event_class.__name__, recorded_at, canonical_fields
        )
        fields["timestamp"] = timestamp
        fields["prev_digest"] = prev_digest
        fields["digest"] = digest
        return fields

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        """Make, apply and hold the next event (its fields from `kwargs` and their defaults)."""
        self._trigger(event_class, _own_fields(event_class, kwargs))

    def _trigger(
        self,
        event_class: type[Any],
        fields: dict[str, Any],
        canonical: dict[str, bytes] | None = None,
        canonical_fields: bytes | None = None,
    ) -> None:
        """`trigger_event` for a command that gives every field of the event itself.

        `canonical`: some fields by their canonical bytes, `canonical_fields`: all of them (the
        caller vouches they are the canonical form of those fields), so the chain does not
        encode them again."""
        # Every event links to the one before: the digest is fixed when the event is made.
        version = self.version + 1
        state = self._chained(
            event_class,
            self.chain_head,
            version,
            fields,
            self._moment,
            canonical,
            canonical_fields,
        )
        state["originator_id"] = self.id
        state["originator_version"] = version
        # Built as eventsourcing's mapper rebuilds stored events (a frozen dataclass __init__
        # costs a setattr per field, on the hot path); every field is set, defaults included.
        event = object.__new__(event_class)
        object.__setattr__(event, "__dict__", state)
        event.mutate(self)
        self.pending_events.append(event)

    # Set while one command records several events: they are saved in one transaction, so
    # they share one recorded time (and the clock is read and formatted once).
    _moment: tuple[datetime, str] | None = None

    @contextmanager
    def one_moment(self) -> Iterator[None]:
        """Events triggered inside share one timestamp."""
        timestamp = self.Event.create_timestamp()
        self._moment = (timestamp, format_recorded_at(timestamp))
        try:
            yield
        finally:
            del self._moment

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

    @staticmethod
    def admitted_form(
        *,
        identity: str,
        event_type: str,
        event_id: str,
        payload_hash: str,
        source: dict[str, Any] | None,
        canonical_payload: bytes,
    ) -> AdmittedForm:
        """The canonical fields of the `EventAdmitted` these values would make, around its
        offset (see `AdmittedForm`). Raises `CanonicalizationError` as `admit` would.

        Written out directly: the field names are fixed and already in RFC 8785 order
        (event_id, event_type, identity, offset, payload, payload_hash, source), and every
        value is a string, the payload's canonical bytes or the source (the tests hold this
        to `canonicalize` and to the `rfc8785` package)."""
        head = b"".join(
            (
                b'{"event_id":',
                canonical_string(event_id),
                b',"event_type":',
                canonical_string(event_type),
                b',"identity":',
                canonical_string(identity),
                b',"offset":',
            )
        )
        tail = b"".join(
            (
                b',"payload":',
                canonical_payload,
                b',"payload_hash":',
                canonical_string(payload_hash),
                b',"source":',
                b"null" if source is None else canonicalize(source),
                b"}",
            )
        )
        return AdmittedForm(head, tail)

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
        self.trigger_event(self.WindowClosed, summary=summary)

    def bus_offset_range(self) -> dict[str, int | None]:
        first, last = self.bus_offsets if self.bus_offsets else (None, None)
        return {"first": first, "last": last}

    def source_offset_ranges(self) -> dict[str, dict[str, int]]:
        return {p: {"min": lo, "max": hi} for p, (lo, hi) in sorted(self.source_offsets.items())}

    EVENT_TYPES: ClassVar[tuple[str, ...]] = (
        "WindowOpened",
        "EventAdmitted",
        "DuplicateAbsorbed",
        "MismatchQuarantined",
        "PublishUnknown",
        "PublishReconciled",
        "WindowClosed",
    )
