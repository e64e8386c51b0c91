"""A window's state as a snapshot: small and fixed in size whatever the window's length
(counters, pending identities, offset ranges, chain head), so loading a window reads its latest
snapshot and the events after it instead of its whole history (ADR 0017).

A snapshot is a cache of the history, never evidence: the chain verifies from the events alone,
and a loader holds a snapshot's chain head to the stored event at its version before using it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from ledger.domain.window import Window

SNAPSHOT_FORMAT = 1
_COUNTERS = ("admitted", "duplicates", "quarantined", "publish_unknown", "reconciled")


def snapshot_state(window: Window) -> dict[str, Any]:
    """The window's whole state at its current version, as plain JSON values."""
    return {
        "format": SNAPSHOT_FORMAT,
        "id": str(window.id),
        "version": window.version,
        "created_on": window.created_on.isoformat(),
        "modified_on": window.modified_on.isoformat(),
        "chain_head": window.chain_head,
        "window_id": window.window_id,
        "status": window.status,
        **{name: getattr(window, name) for name in _COUNTERS},
        "pending": dict(window.pending),
        "bus_offsets": None if window.bus_offsets is None else list(window.bus_offsets),
        "source_offsets": {p: list(r) for p, r in window.source_offsets.items()},
        "summary": window.summary,
        "closed_at": window.closed_at,
        "bus_duplicates_accepted": window.bus_duplicates_accepted,
    }


def copy_window(window: Window) -> Window:
    """A copy of the window's state, without its pending events: what a command keeps to put
    back if it loses a version race, so the next attempt reads only the events the window
    lacks instead of loading it again. It shares nothing that is changed in place, except the
    pending identities, which either side copies before its first change (`own_pending`): a
    command that settles no publish outcome copies none of them."""
    copy = object.__new__(Window)
    state = dict(window.__dict__)
    state["_pending_events"] = []
    state["pending_shared"] = window.pending_shared = True
    if window.bus_offsets is not None:
        state["bus_offsets"] = list(window.bus_offsets)
    state["source_offsets"] = {p: list(r) for p, r in window.source_offsets.items()}
    copy.__dict__.update(state)
    return copy


def window_from_snapshot(state: dict[str, Any]) -> Window:
    """The window a snapshot describes (raises KeyError, ValueError or TypeError for a
    snapshot that is not one of this format)."""
    if state.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"unknown snapshot format {state.get('format')!r}")
    pending = state["pending"]
    sources = state["source_offsets"]
    if not isinstance(pending, dict) or not isinstance(sources, dict):
        raise TypeError("pending and source_offsets must be objects")
    window = object.__new__(Window)
    window.__dict__.update(
        {
            "_id": UUID(state["id"]),
            "_version": int(state["version"]),
            "_created_on": datetime.fromisoformat(state["created_on"]),
            "_modified_on": datetime.fromisoformat(state["modified_on"]),
            "_pending_events": [],
            "window_id": str(state["window_id"]),
            "status": str(state["status"]),
            **{name: int(state[name]) for name in _COUNTERS},
            "pending": {str(i): int(v) for i, v in pending.items()},
            "bus_offsets": None
            if state["bus_offsets"] is None
            else [int(x) for x in state["bus_offsets"]],
            "source_offsets": {str(p): [int(x) for x in r] for p, r in sources.items()},
            "summary": state["summary"],
            "closed_at": state["closed_at"],
            "chain_head": str(state["chain_head"]),
            # Absent from snapshots written before operators could accept bus duplicates.
            "bus_duplicates_accepted": int(state.get("bus_duplicates_accepted", 0)),
        }
    )
    return window
