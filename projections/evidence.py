"""Evidence kept beside the read models, owned by no projection (a rebuild never touches it):
the latest integrity check of each window, and each closed window's signed receipt."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, select

from projections.store import ReadStore
from projections.tables import integrity, receipts, signed_receipts
from projections.upsert import insert_ignoring_conflicts, upsert


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def record_check(
    conn: Connection,
    window_id: str,
    *,
    ok: bool,
    reasons: Sequence[str],
    source: str,
    events: int | None = None,
    head: str | None = None,
) -> None:
    """Keep this check as the window's latest, inside the caller's transaction (the follower
    notes what it saw in the transaction that applies it)."""
    row = {
        "window_id": window_id,
        "ok": ok,
        "reasons": json.dumps(list(reasons)),
        "events": events,
        "head": head,
        "checked_at": _now(),
        "source": source,
    }
    # What the follower saw cannot be seen again in the store: no other check replaces it
    # (a guard inside the statement, so a check racing the follower cannot lose its note).
    follower_failed = and_(integrity.c.source == "follower", integrity.c.ok.is_(False))
    upsert(
        conn,
        integrity,
        [row],
        ["window_id"],
        unless=None if source == "follower" else follower_failed,
    )


class EvidenceStore:
    def __init__(self, store: ReadStore) -> None:
        self.store = store

    # --- integrity ------------------------------------------------------------------------

    def record(
        self,
        window_id: str,
        *,
        ok: bool,
        reasons: Sequence[str],
        source: str,
        events: int | None = None,
        head: str | None = None,
    ) -> None:
        """Keep this check as the window's latest."""
        with self.store.writer.begin() as conn:
            record_check(
                conn, window_id, ok=ok, reasons=reasons, source=source, events=events, head=head
            )

    def failures(self, window_ids: Sequence[str] | None = None) -> dict[str, list[str]]:
        """The reasons of every window whose latest check failed (of `window_ids` if given)."""
        query = select(integrity.c.window_id, integrity.c.reasons).where(integrity.c.ok.is_(False))
        if window_ids is not None:
            query = query.where(integrity.c.window_id.in_(list(window_ids)))
        with self.store.reader.connect() as conn:
            return {row.window_id: json.loads(row.reasons) for row in conn.execute(query)}

    def latest(self, window_id: str) -> dict[str, Any] | None:
        with self.store.reader.connect() as conn:
            row = conn.execute(select(integrity).where(integrity.c.window_id == window_id)).first()
        if row is None:
            return None
        found = dict(row._mapping)
        found["reasons"] = json.loads(found["reasons"])
        return found

    # --- signed receipts ------------------------------------------------------------------

    def keep_signed(self, window_id: str, receipt: dict[str, Any], key_id: str) -> None:
        """Keep the first signed receipt of a window; a later one never replaces it."""
        with self.store.writer.begin() as conn:
            conn.execute(
                insert_ignoring_conflicts(conn, signed_receipts),
                [
                    {
                        "window_id": window_id,
                        "receipt": json.dumps(receipt, sort_keys=True, ensure_ascii=False),
                        "key_id": key_id,
                        "signed_at": _now(),
                    }
                ],
            )

    def signed(self, window_id: str) -> dict[str, Any] | None:
        with self.store.reader.connect() as conn:
            text = conn.execute(
                select(signed_receipts.c.receipt).where(signed_receipts.c.window_id == window_id)
            ).scalar()
        return None if text is None else dict(json.loads(text))

    def sealed_windows(self) -> set[str]:
        """Windows with a signed receipt: their history must end at their WindowClosed."""
        with self.store.reader.connect() as conn:
            return set(conn.execute(select(signed_receipts.c.window_id)).scalars())

    def closed_windows(self, after: str | None, limit: int) -> list[str]:
        """Closed windows in id order, a page at a time (for the scrub): by the read side or by
        a signed receipt (a read side that lost a window's close must not hide it)."""
        by_receipt = select(receipts.c.window_id).where(receipts.c.status == "CLOSED")
        by_signature = select(signed_receipts.c.window_id)
        if after is not None:
            by_receipt = by_receipt.where(receipts.c.window_id > after)
            by_signature = by_signature.where(signed_receipts.c.window_id > after)
        query = by_receipt.union(by_signature).order_by("window_id").limit(limit)
        with self.store.reader.connect() as conn:
            return list(conn.execute(query).scalars())
