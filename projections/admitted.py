"""Admitted events with their payloads, in offset order (served only for a PASS window);
identities whose publish is UNKNOWN are kept too, with their payload and no offset."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, delete, update

from projections.base import ProjectedEvent, hashed_to_json, to_json
from projections.tables import admitted
from projections.upsert import insert_rows


class AdmittedProjection:
    name = "admitted"

    def tables(self) -> list[Table]:
        return [admitted]

    def apply(self, conn: Connection, events: list[ProjectedEvent], t: dict[str, Table]) -> None:
        table = t[admitted.name]
        # Merge the batch in memory first, so each row is written once.
        new_rows: dict[tuple[str, str], dict[str, Any]] = {}
        published: dict[tuple[str, str], int] = {}
        dropped: set[tuple[str, str]] = set()
        for e in events:
            f = e.fields
            if e.type in ("EventAdmitted", "PublishUnknown"):
                key = (e.window_id, f["identity"])
                new_rows[key] = {
                    "window_id": e.window_id,
                    "identity": f["identity"],
                    "event_type": f["event_type"],
                    "event_id": f["event_id"],
                    "payload": hashed_to_json(f["payload"], f["payload_hash"]),
                    "payload_hash": f["payload_hash"],
                    "state": "ADMITTED" if e.type == "EventAdmitted" else "UNKNOWN",
                    "bus_offset": f.get("offset") if e.type == "EventAdmitted" else None,
                    "source": to_json(f["source"]) if f.get("source") is not None else None,
                    # The event that carries the payload: what an admitted page is checked against.
                    "version": e.version,
                }
            elif e.type == "PublishReconciled":
                key = (e.window_id, f["identity"])
                if f["outcome"] == "published":
                    if key in new_rows:
                        new_rows[key].update(state="ADMITTED", bus_offset=f["offset"])
                    else:
                        published[key] = f["offset"]
                elif new_rows.pop(key, None) is None:
                    dropped.add(key)
        if new_rows:
            insert_rows(conn, table, list(new_rows.values()))
        if published:
            conn.execute(
                update(table)
                .where(
                    and_(table.c.window_id == bindparam("w"), table.c.identity == bindparam("i"))
                )
                .values(state="ADMITTED", bus_offset=bindparam("o")),
                [{"w": w, "i": i, "o": o} for (w, i), o in published.items()],
            )
        if dropped:
            conn.execute(
                delete(table).where(
                    and_(table.c.window_id == bindparam("w"), table.c.identity == bindparam("i"))
                ),
                [{"w": w, "i": i} for w, i in dropped],
            )
