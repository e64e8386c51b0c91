"""Reading the read models: receipts, gate, windows list, admitted events, quarantine queue."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from ledger.receipts import COUNT_KEYS, receipt_json
from projections.store import ReadStore
from projections.tables import (
    activity,
    admitted,
    integrity,
    pending,
    quarantine,
    receipt_sources,
    receipts,
    signed_receipts,
)

MAX_PAGE = 1000


def _limit(limit: int | None, default: int = 100) -> int:
    return max(1, min(limit or default, MAX_PAGE))


class ReadModels:
    def __init__(self, store: ReadStore) -> None:
        self.store = store

    def receipt(self, window_id: str) -> dict[str, Any] | None:
        with self.store.reader.connect() as conn:
            row = conn.execute(select(receipts).where(receipts.c.window_id == window_id)).first()
            if row is None:
                return None
            sources = conn.execute(
                select(receipt_sources)
                .where(receipt_sources.c.window_id == window_id)
                .order_by(receipt_sources.c.partition)
            )
            source_offsets = {
                s.partition: {"min": s.min_offset, "max": s.max_offset} for s in sources
            }
        return self._receipt(row._mapping, source_offsets)

    @staticmethod
    def _receipt(row: Any, source_offsets: dict[str, dict[str, int]]) -> dict[str, Any]:
        return receipt_json(
            window_id=row["window_id"],
            status=row["status"],
            gate=row["gate"],
            counts={k: row[k] for k in COUNT_KEYS},
            bus_offsets={"first": row["bus_first"], "last": row["bus_last"]},
            source_offsets=source_offsets,
            opened_at=row["opened_at"],
            closed_at=row["closed_at"],
            events=row["events"],
            chain_head=row["chain_head"],
        )

    def gauges(self) -> tuple[int, dict[str, int]]:
        """What the metrics show of the read side: pending unknowns in all, windows by gate."""
        with self.store.reader.connect() as conn:
            pending = conn.execute(
                select(func.coalesce(func.sum(receipts.c.pending_unknown), 0))
            ).scalar()
            # As served: a closed window whose latest integrity check failed counts as FAIL.
            failed = and_(receipts.c.status == "CLOSED", integrity.c.ok.is_(False))
            gate = case((failed, "FAIL"), else_=receipts.c.gate).label("served_gate")
            by_gate = conn.execute(
                select(gate, func.count())
                .select_from(
                    receipts.outerjoin(integrity, integrity.c.window_id == receipts.c.window_id)
                )
                .group_by(gate)
            )
            return int(pending or 0), {g: int(n) for g, n in by_gate}

    def gate(self, window_id: str) -> dict[str, Any] | None:
        with self.store.reader.connect() as conn:
            row = conn.execute(
                select(receipts.c.gate, receipts.c.gate_reasons).where(
                    receipts.c.window_id == window_id
                )
            ).first()
        if row is None:
            return None
        return {"window_id": window_id, "status": row.gate, "reasons": json.loads(row.gate_reasons)}

    def windows(
        self,
        after: str | None,
        limit: int | None,
        *,
        gate: str | None = None,
        search: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Windows in id order, a page at a time; `gate` keeps those whose gate (as served: a
        sealed window whose latest check failed is FAIL) is that one, `search` those whose id
        holds that text."""
        n = _limit(limit)
        served = _served_gate()
        query = (
            select(receipts, served)
            .select_from(
                receipts.outerjoin(
                    integrity, integrity.c.window_id == receipts.c.window_id
                ).outerjoin(signed_receipts, signed_receipts.c.window_id == receipts.c.window_id)
            )
            .order_by(receipts.c.window_id)
            .limit(n + 1)
        )
        if after:
            query = query.where(receipts.c.window_id > after)
        if gate:
            query = query.where(served == gate)
        if search:
            query = query.where(receipts.c.window_id.contains(search, autoescape=True))
        with self.store.reader.connect() as conn:
            rows = list(conn.execute(query))
        items = [
            {
                "window_id": r.window_id,
                "status": r.status,
                "gate": r.served_gate,
                "counts": {k: r._mapping[k] for k in COUNT_KEYS},
                "opened_at": r.opened_at,
                "closed_at": r.closed_at,
            }
            for r in rows[:n]
        ]
        return items, (rows[n - 1].window_id if len(rows) > n else None)

    def activity(self, window_id: str) -> list[dict[str, Any]]:
        """Arrivals by verdict per minute, oldest first (one row per minute and verdict)."""
        query = (
            select(activity.c.minute, activity.c.verdict, activity.c.n)
            .where(activity.c.window_id == window_id)
            .order_by(activity.c.minute, activity.c.verdict)
        )
        with self.store.reader.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def pending(self, window_id: str, limit: int | None) -> tuple[list[dict[str, Any]], int]:
        """The oldest pending unknown identities of a window, and how many there are."""
        where = pending.c.window_id == window_id
        query = select(pending).where(where).order_by(pending.c.since, pending.c.identity)
        with self.store.reader.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query.limit(_limit(limit)))]
            total = conn.execute(select(func.count()).select_from(pending).where(where)).scalar()
        return rows, int(total or 0)

    def admitted_events(
        self, window_id: str, after: int | None, limit: int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        n = _limit(limit)
        query = (
            select(admitted)
            .where(admitted.c.window_id == window_id, admitted.c.state == "ADMITTED")
            .order_by(admitted.c.bus_offset)
            .limit(n + 1)
        )
        if after is not None:
            query = query.where(admitted.c.bus_offset > after)
        with self.store.reader.connect() as conn:
            rows = list(conn.execute(query))
        items = [_admitted_item(r) for r in rows[:n]]
        return items, (str(rows[n - 1].bus_offset) if len(rows) > n else None)

    def admitted_by_version(
        self, window_id: str, after_version: int, limit: int, *, up_to: int | None = None
    ) -> list[dict[str, Any]]:
        """The window's admitted rows in history order, a page at a time (for the scrub),
        at most up to version `up_to`."""
        query = (
            select(admitted)
            .where(
                admitted.c.window_id == window_id,
                admitted.c.state == "ADMITTED",
                admitted.c.version > after_version,
            )
            .order_by(admitted.c.version)
            .limit(limit)
        )
        if up_to is not None:
            query = query.where(admitted.c.version <= up_to)
        with self.store.reader.connect() as conn:
            return [_admitted_item(r) for r in conn.execute(query)]

    def quarantine_queue(
        self, window_id: str | None, after: int | None, limit: int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        n = _limit(limit)
        original = admitted.alias("original")
        query = (
            select(quarantine, original.c.payload.label("original_payload"))
            .select_from(
                quarantine.outerjoin(
                    original,
                    and_(
                        original.c.window_id == quarantine.c.window_id,
                        original.c.identity == quarantine.c.identity,
                    ),
                )
            )
            .order_by(quarantine.c.first_position, quarantine.c.received_hash)
            .limit(n + 1)
        )
        if window_id is not None:
            query = query.where(quarantine.c.window_id == window_id)
        if after is not None:
            query = query.where(quarantine.c.first_position > after)
        with self.store.reader.connect() as conn:
            rows = list(conn.execute(query))
        items = [
            {
                "window_id": r.window_id,
                "event_type": r.event_type,
                "event_id": r.event_id,
                "identity": r.identity,
                "original_hash": r.original_hash,
                "original_payload": json.loads(r.original_payload) if r.original_payload else None,
                "received_hash": r.received_hash,
                "received_payload": json.loads(r.received_payload),
                "occurrences": r.occurrences,
                "first_seen": r.first_seen,
                "last_seen": r.last_seen,
                "late": bool(r.late),  # after close, outside the sealed history (s.9)
            }
            for r in rows[:n]
        ]
        return items, (str(rows[n - 1].first_position) if len(rows) > n else None)


def _served_gate() -> Any:
    """The gate as served (contract s.9): FAIL for a closed or sealed window whose latest
    integrity check failed, whatever the read model says."""
    sealed = or_(receipts.c.status == "CLOSED", signed_receipts.c.window_id.is_not(None))
    failed = and_(sealed, integrity.c.ok.is_(False))
    return case((failed, "FAIL"), else_=receipts.c.gate).label("served_gate")


def _admitted_item(r: Any) -> dict[str, Any]:
    return {
        "offset": r.bus_offset,
        "event_type": r.event_type,
        "event_id": r.event_id,
        "identity": r.identity,
        "payload_hash": r.payload_hash,
        "payload": json.loads(r.payload),
        "source": json.loads(r.source) if r.source else None,
        "version": r.version,  # of the event in the window's history that carries it
    }
