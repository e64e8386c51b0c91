"""The gate of a window as the read side sees it: the rule of `ledger.gate`, applied to a
receipt row and its closing summary."""

from __future__ import annotations

import json
from typing import Any

from ledger.gate import disagreements, judge
from ledger.receipts import COUNT_KEYS


def judge_row(row: dict[str, Any], sources: dict[str, dict[str, int]]) -> tuple[str, list[str]]:
    """The contract's gate (s.4) from a receipt row and its source offset ranges."""
    closed = row["status"] == "CLOSED"
    problems: list[str] = []
    if closed:
        read_side = {
            "counts": {k: row[k] for k in COUNT_KEYS},
            "bus_offsets": {"first": row["bus_first"], "last": row["bus_last"]},
            "source_offsets": sources,
            "events": row["events"],
        }
        problems = disagreements(read_side, json.loads(row["summary"]))
    return judge(closed=closed, pending_unknown=row["pending_unknown"], problems=problems)
