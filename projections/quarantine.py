"""The quarantine queue: one row per distinct (identity, received hash), with occurrences.

In-window mismatches (`MismatchQuarantined`, in the window's history) and late ones
(`LateMismatchRecorded`, of the window's late arrivals: after close, outside its sealed history,
contract s.9) are kept apart by `late`: the same drift before and after close is two rows.
The original payload is not copied here: readers join the admitted read model on identity.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table

from projections.base import ProjectedEvent, hashed_to_json
from projections.tables import quarantine
from projections.upsert import upsert

# The events that are quarantine entries, and whether each is late.
_LATE_BY_TYPE = {"MismatchQuarantined": False, "LateMismatchRecorded": True}


class QuarantineProjection:
    name = "quarantine"

    def tables(self) -> list[Table]:
        return [quarantine]

    def apply(self, conn: Connection, events: list[ProjectedEvent], t: dict[str, Table]) -> None:
        rows: dict[tuple[str, str, str, bool], dict[str, Any]] = {}
        for e in events:
            late = _LATE_BY_TYPE.get(e.type)
            if late is None:
                continue
            f = e.fields
            key = (e.window_id, f["identity"], f["received_hash"], late)
            row = rows.get(key)
            if row is None:
                rows[key] = {
                    "window_id": e.window_id,
                    "identity": f["identity"],
                    "received_hash": f["received_hash"],
                    "late": late,
                    "first_position": e.position,
                    "event_type": f["event_type"],
                    "event_id": f["event_id"],
                    "original_hash": f["original_hash"],
                    "received_payload": hashed_to_json(f["received_payload"], f["received_hash"]),
                    "occurrences": 1,
                    "first_seen": e.recorded_at,
                    "last_seen": e.recorded_at,
                }
            else:
                row["occurrences"] += 1
                row["last_seen"] = e.recorded_at
        # A repeat seen in an earlier batch adds its occurrences and keeps its first sighting.
        upsert(
            conn,
            t[quarantine.name],
            list(rows.values()),
            ["window_id", "identity", "received_hash", "late"],
            add=["occurrences"],
            keep=["first_position", "first_seen"],
        )
