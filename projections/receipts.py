"""Receipts, gate status and the windows list: one row per window (plus source offset ranges).

A row counts the window's events as they arrive (`events`), so each event's version must be the
next one. One that is not (a version seen again, or versions skipped) means the stored log the
read side follows was changed under it: a stored event removed or replaced. The row still
applies it (its counts then disagree with the history, so a closed window's gate is FAIL), and
the window's integrity check records the failure in the same transaction (`ev_integrity`, which
no rebuild touches).

The events of a window's late arrivals (`LateArrivalsOpened`, `LateMismatchRecorded`: another
aggregate, named by the same window id) are outside its history: not counted here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, select

from projections.base import ProjectedEvent, to_json
from projections.evidence import record_check
from projections.gate import judge_row
from projections.tables import receipt_sources, receipts
from projections.upsert import upsert

# Events of a window's late arrivals (see the module), by their type names.
LATE_PREFIX = "Late"


class ReceiptsProjection:
    name = "receipts"

    def tables(self) -> list[Table]:
        return [receipts, receipt_sources]

    def apply(self, conn: Connection, events: list[ProjectedEvent], t: dict[str, Table]) -> None:
        events = [e for e in events if not e.type.startswith(LATE_PREFIX)]
        if not events:
            return
        table, sources_table = t[receipts.name], t[receipt_sources.name]
        window_ids = list(dict.fromkeys(e.window_id for e in events))
        rows = self._load(conn, table, window_ids)
        sources = self._load_sources(conn, sources_table, window_ids)
        touched_sources: set[tuple[str, str]] = set()
        out_of_order: dict[str, list[str]] = {}
        for e in events:
            row = rows.get(e.window_id)
            if row is None:
                row = rows[e.window_id] = self._new_row(e)
            if e.version != row["events"] + 1:
                out_of_order.setdefault(e.window_id, []).append(_out_of_order(e, row["events"]))
            self._apply_one(row, sources.setdefault(e.window_id, {}), e, touched_sources)
        for window_id, problems in out_of_order.items():
            record_check(conn, window_id, ok=False, reasons=problems, source="follower")
        for window_id in window_ids:
            row = rows[window_id]
            row["gate"], reasons = judge_row(row, self._ranges(sources.get(window_id, {})))
            row["gate_reasons"] = to_json(reasons)
        upsert(conn, table, list(rows.values()), ["window_id"])
        upsert(
            conn,
            sources_table,
            [
                {"window_id": w, "partition": p, "min_offset": lo, "max_offset": hi}
                for (w, p) in sorted(touched_sources)
                for lo, hi in [sources[w][p]]
            ],
            ["window_id", "partition"],
        )

    @staticmethod
    def _ranges(window_sources: dict[str, list[int]]) -> dict[str, dict[str, int]]:
        return {p: {"min": lo, "max": hi} for p, (lo, hi) in sorted(window_sources.items())}

    @staticmethod
    def _load(
        conn: Connection, table: Table, window_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        result = conn.execute(select(table).where(table.c.window_id.in_(window_ids)))
        return {row.window_id: dict(row._mapping) for row in result}

    @staticmethod
    def _load_sources(
        conn: Connection, table: Table, window_ids: Sequence[str]
    ) -> dict[str, dict[str, list[int]]]:
        found: dict[str, dict[str, list[int]]] = {}
        for row in conn.execute(select(table).where(table.c.window_id.in_(window_ids))):
            found.setdefault(row.window_id, {})[row.partition] = [row.min_offset, row.max_offset]
        return found

    @staticmethod
    def _new_row(e: ProjectedEvent) -> dict[str, Any]:
        return {
            "window_id": e.window_id,
            "status": "OPEN",
            "gate": "OPEN",
            "gate_reasons": "[]",
            "admitted": 0,
            "duplicates": 0,
            "quarantined": 0,
            "publish_unknown": 0,
            "reconciled": 0,
            "pending_unknown": 0,
            "bus_first": None,
            "bus_last": None,
            "opened_at": e.recorded_at,
            "closed_at": None,
            "events": 0,
            "chain_head": "",
            "summary": None,
            "last_event_at": None,
        }

    @staticmethod
    def _apply_one(
        row: dict[str, Any],
        window_sources: dict[str, list[int]],
        e: ProjectedEvent,
        touched_sources: set[tuple[str, str]],
    ) -> None:
        f = e.fields
        row["events"] += 1
        row["last_event_at"] = e.recorded_at
        row["chain_head"] = e.digest
        if e.type == "EventAdmitted":
            row["admitted"] += 1
            _note_offset(row, f["offset"])
        elif e.type == "DuplicateAbsorbed":
            row["duplicates"] += 1
        elif e.type == "MismatchQuarantined":
            row["quarantined"] += 1
        elif e.type == "PublishUnknown":
            row["publish_unknown"] += 1
            row["pending_unknown"] += 1
        elif e.type == "PublishReconciled":
            row["reconciled"] += 1
            row["pending_unknown"] -= 1
            if f["outcome"] == "published":
                row["admitted"] += 1
                _note_offset(row, f["offset"])
        elif e.type == "WindowClosed":
            row["status"] = "CLOSED"
            row["closed_at"] = e.recorded_at
            row["summary"] = to_json(f["summary"])
        source = f.get("source") if e.type in ("EventAdmitted", "PublishUnknown") else None
        if source is not None:
            partition, offset = source["partition"], source["offset"]
            current = window_sources.get(partition)
            window_sources[partition] = (
                [offset, offset]
                if current is None
                else [min(current[0], offset), max(current[1], offset)]
            )
            touched_sources.add((e.window_id, partition))


def _note_offset(row: dict[str, Any], offset: int) -> None:
    row["bus_first"] = offset if row["bus_first"] is None else min(row["bus_first"], offset)
    row["bus_last"] = offset if row["bus_last"] is None else max(row["bus_last"], offset)


def _out_of_order(e: ProjectedEvent, applied: int) -> str:
    """Why an event whose version does not follow the `applied` events before it is a failure."""
    if e.version > applied + 1:
        return (
            f"the read side saw version {e.version} after version {applied}: stored events "
            "were removed from the log it follows"
        )
    return (
        f"the read side saw version {e.version} after version {applied}: a stored event was "
        "removed or replaced"
    )
