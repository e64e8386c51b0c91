"""Stored event state as plain JSON.

eventsourcing's JSONTranscoder tags custom types with `_type_`/`_data_` keys and would decode a
payload that happens to contain those keys into something else. Our events hold only JSON values
plus the timestamp, so plain msgspec JSON is exact, faster, and readable in the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.persistence import Transcoder

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
