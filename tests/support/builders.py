"""Admissions and events as the tests write them: plain dicts, validated like every entry point.

ledger.admit("w", batch("w", event("1"), event("2", {"amount": 5}, source=...)))
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger.admissions import Admission, AdmissionIn, identity_of, prepare

TYPE = "order.created"


def event(event_id: str, payload: Any = None, **extra: Any) -> dict[str, Any]:
    """One event as a producer sends it: type order.created, payload {"id": event_id} unless
    given; `extra` adds or overrides fields (source=..., event_type=...)."""
    body = payload if payload is not None else {"id": event_id}
    return {"event_type": TYPE, "event_id": event_id, "payload": body, **extra}


def batch(window_id: str, *items: dict[str, Any]) -> list[Admission]:
    """Admissions from plain dicts, validated the way every entry point validates them."""
    return prepare(window_id, [msgspec.convert(item, AdmissionIn) for item in items])


def identity(window_id: str, event_id: str, event_type: str = TYPE) -> str:
    """The identity the ledger gives an event of `event()` in this window."""
    return identity_of(window_id, event_type, event_id)
