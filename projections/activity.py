"""What the reviewer's window page shows besides the receipt: admissions by verdict per minute
(the chart) and the identities whose publish outcome is unknown now, with their age.

Both are small per window whatever its size: one row per minute and verdict, one row per
pending identity. No page reads a whole window.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, delete

from projections.base import ProjectedEvent
from projections.tables import activity, pending
from projections.upsert import upsert

# The verdict each history event records (contract s.3); reconciles are not arrivals.
VERDICT_OF = {
    "EventAdmitted": "ADMITTED",
    "DuplicateAbsorbed": "DUPLICATE",
    "MismatchQuarantined": "QUARANTINED",
    "PublishUnknown": "PUBLISH_UNKNOWN",
}
MINUTE = len("YYYY-MM-DDTHH:MM")


class ActivityProjection:
    name = "activity"

    def tables(self) -> list[Table]:
        return [activity]

    def apply(self, conn: Connection, events: list[ProjectedEvent], t: dict[str, Table]) -> None:
        counts: dict[tuple[str, str, str], int] = {}
        for e in events:
            verdict = VERDICT_OF.get(e.type)
            if verdict is not None:
                key = (e.window_id, e.recorded_at[:MINUTE], verdict)
                counts[key] = counts.get(key, 0) + 1
        upsert(
            conn,
            t[activity.name],
            [
                {"window_id": w, "minute": m, "verdict": v, "n": n}
                for (w, m, v), n in sorted(counts.items())
            ],
            ["window_id", "minute", "verdict"],
            add=["n"],
        )


class PendingProjection:
    name = "pending"

    def tables(self) -> list[Table]:
        return [pending]

    def apply(self, conn: Connection, events: list[ProjectedEvent], t: dict[str, Table]) -> None:
        table = t[pending.name]
        unknown: dict[tuple[str, str], dict[str, Any]] = {}
        resolved: set[tuple[str, str]] = set()
        for e in events:
            if e.type == "PublishUnknown":
                f = e.fields
                key = (e.window_id, f["identity"])
                resolved.discard(key)
                unknown[key] = {
                    "window_id": e.window_id,
                    "identity": f["identity"],
                    "event_type": f["event_type"],
                    "event_id": f["event_id"],
                    "reason": f["reason"],
                    "since": e.recorded_at,
                    "version": e.version,
                }
            elif e.type == "PublishReconciled":
                key = (e.window_id, e.fields["identity"])
                if unknown.pop(key, None) is None:
                    resolved.add(key)
        if resolved:
            conn.execute(
                delete(table).where(
                    and_(table.c.window_id == bindparam("w"), table.c.identity == bindparam("i"))
                ),
                [{"w": w, "i": i} for w, i in sorted(resolved)],
            )
        upsert(conn, table, list(unknown.values()), ["window_id", "identity"])
