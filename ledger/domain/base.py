"""The project's aggregate base: chained events and the library-facing event machinery.

Every event of a `ChainedAggregate` carries `prev_digest` and `digest`, fixed when the event is
made; events are built the way eventsourcing's mapper rebuilds stored ones (no frozen-dataclass
`__init__` on the hot path). Imports only the standard library and `eventsourcing.domain`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, OriginatorIDError, OriginatorVersionError

from ledger.domain.chain import META_KEYS, chain_digest_of, format_recorded_at
from ledger.jcs import Canonical, canonicalize

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


def own_fields(event_class: type[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
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


class ChainedAggregate(Aggregate):
    """An aggregate whose events form a hash chain (see `ledger.domain.chain`)."""

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

    class Opened(Event, Aggregate.Created):
        """The first event of a chained aggregate: it starts the chain head too."""

        def mutate(self, aggregate: Any) -> Any:
            opened = Aggregate.Created.mutate(self, aggregate)
            assert opened is not None
            opened.chain_head = self.digest
            return opened

    chain_head: str  # set by every event's mutate()

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
        self._trigger(event_class, own_fields(event_class, kwargs))

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
