"""A window stored by an older ledger (before DuplicateAbsorbed gained class_version 2), written
into the event store as it was stored then: tests/fixtures/window_v1_events.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eventsourcing.persistence import StoredEvent

from ledger.domain import window_uuid

V1_EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "window_v1_events.json"


def store_v1_window(recorder: Any) -> str:
    """Insert the stored version-1 events with `recorder`; returns their window id."""
    data = json.loads(V1_EVENTS.read_text())
    uuid = window_uuid(data["window_id"])
    recorder.insert_events(
        [
            StoredEvent(uuid, row["originator_version"], row["topic"], row["state"].encode())
            for row in data["events"]
        ]
    )
    return str(data["window_id"])
