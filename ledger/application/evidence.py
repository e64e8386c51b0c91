"""Checking a window's history as evidence (contract s.2 and s.9): recompute its hash chain
from the history alone, and hold it to the receipt signed at close.

One walk serves the live store (`HistoryReader.verify`) and an exported bundle read from a file
with no database (`ledger verify --bundle`). Pure: no storage, no keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger.application.results import Verification
from ledger.domain import GENESIS_DIGEST, chain_digest
from ledger.gate import chain_broken
from ledger.jcs import canonicalize

CLOSING_EVENT = "WindowClosed"
# What the signature covers: the receipt without these (contract s.9).
UNSIGNED_KEYS = frozenset({"signature", "gate"})


def signed_bytes(receipt: Mapping[str, Any]) -> bytes:
    """The bytes a receipt's signature is over: JCS of the receipt without signature and gate."""
    return canonicalize({k: v for k, v in receipt.items() if k not in UNSIGNED_KEYS})


class ChainWalk:
    """Recomputes a history's chain one event at a time, in version order."""

    def __init__(self) -> None:
        self.head = GENESIS_DIGEST
        self.events = 0
        self.first_bad: int | None = None
        self.last_type: str | None = None

    def step(self, item: Mapping[str, Any]) -> None:
        """One event as the history serves it: version, type, recorded_at, fields, prev_digest,
        digest. The walk goes on past a bad event, from the digest it recomputed."""
        self.events += 1
        version = item.get("version")
        try:
            if type(version) is not int:
                raise TypeError(f"version {version!r} is not an integer")
            recomputed = chain_digest(
                self.head, version, item["type"], item["recorded_at"], item["fields"]
            )
            intact = (
                version == self.events
                and item["prev_digest"] == self.head
                and item["digest"] == recomputed
            )
        except Exception:  # anything that does not recompute is tampering too
            intact, recomputed = False, self.head
        self.last_type = item.get("type") if isinstance(item, Mapping) else None
        if not intact:
            self.fail(version if isinstance(version, int) else self.events, counted=True)
        self.head = recomputed

    def fail(self, version: int, *, counted: bool = False) -> None:
        """An event that could not even be read as history."""
        if not counted:
            self.events += 1
            self.last_type = None
        if self.first_bad is None:
            self.first_bad = version

    def verification(self) -> Verification:
        return Verification(self.first_bad is None, self.events, self.head, self.first_bad)


def problems_against(walk: ChainWalk, receipt: Mapping[str, Any] | None, sealed: bool) -> list[str]:
    """What keeps a history from standing as evidence: a chain that does not recompute; for a
    sealed (closed) window, a history that no longer ends at its WindowClosed; and the head and
    event count of the receipt signed at close, when there is one."""
    problems = []
    if walk.first_bad is not None:
        problems.append(chain_broken(walk.first_bad))
    if sealed and walk.last_type != CLOSING_EVENT:
        problems.append(
            f"history no longer ends at its {CLOSING_EVENT} (its last event is "
            f"{walk.last_type or 'missing'}, version {walk.events})"
        )
    if receipt is not None:
        if walk.events != receipt.get("events"):
            problems.append(
                f"history holds {walk.events} events, the signed receipt {receipt.get('events')}"
            )
        if walk.head != receipt.get("chain_head"):
            problems.append(
                f"history's head {walk.head} is not the signed receipt's "
                f"{receipt.get('chain_head')}"
            )
    return problems


def first_bad_version(
    walk: ChainWalk, receipt: Mapping[str, Any] | None, sealed: bool
) -> int | None:
    """The first version that does not stand: where the chain breaks; else where the history
    parts from its signed receipt (the first missing or extra event, or the last signed one
    when only the head differs); else, for a sealed window, the event after its last."""
    if walk.first_bad is not None:
        return walk.first_bad
    if receipt is not None and isinstance(signed_events := receipt.get("events"), int):
        if walk.events != signed_events:
            return min(walk.events, signed_events) + 1
        if walk.head != receipt.get("chain_head"):
            return signed_events
    if sealed and walk.last_type != CLOSING_EVENT:
        return walk.events + 1
    return None
