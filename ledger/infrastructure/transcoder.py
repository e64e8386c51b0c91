"""Stored event state as plain JSON.

eventsourcing's JSONTranscoder tags custom types with `_type_`/`_data_` keys and would decode a
payload that happens to contain those keys into something else. Our events hold only JSON values
plus the timestamp, so plain msgspec JSON is exact, faster, and readable in the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic

from ledger.infrastructure.frozen import made_frozen

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class JSONStateTranscoder(Transcoder):
    def encode(self, obj: Any) -> bytes:
        return _encoder.encode(obj)

    def decode(self, data: bytes) -> Any:
        state = _decoder.decode(data)
        if isinstance(state, dict) and isinstance(state.get("timestamp"), str):
            state["timestamp"] = datetime.fromisoformat(state["timestamp"])
        return state


class LedgerMapper(Mapper[UUID]):
    """The library's mapping to stored events, less its per-event overheads (the topic looked
    up once per class, the stored event built without a frozen dataclass's setattr per field):
    it runs once per admission on the write path. Reading is the library's own."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        cls = type(domain_event)
        topic = _TOPICS.get(cls)
        if topic is None:
            topic = _TOPICS[cls] = get_topic(cls)
        state = domain_event.__dict__.copy()
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(cls, "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        data = self.transcoder.encode(state)
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data)
        return made_frozen(
            StoredEvent,
            originator_id=originator_id,
            originator_version=originator_version,
            topic=topic,
            state=data,
        )


_TOPICS: dict[type[Any], str] = {}
