"""The contract's per-identity state machine (section 3) as a pure function."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class IdentityState(StrEnum):
    ABSENT = "ABSENT"
    ADMITTED = "ADMITTED"
    UNKNOWN = "UNKNOWN"


class Verdict(StrEnum):
    ADMITTED = "ADMITTED"
    DUPLICATE = "DUPLICATE"
    QUARANTINED = "QUARANTINED"
    PUBLISH_UNKNOWN = "PUBLISH_UNKNOWN"


class Action(StrEnum):
    """What an arrival asks of the bus before a verdict can be given."""

    PUBLISH = (
        "PUBLISH"  # ABSENT, or UNKNOWN with the same hash: (re-)publish, message id = identity
    )
    ABSORB = "ABSORB"  # ADMITTED with the same hash
    QUARANTINE = "QUARANTINE"  # known identity, different hash: the first stays the truth


class Known(NamedTuple):
    """What the ledger knows of an identity: its state, the true payload hash, its offset.

    (A NamedTuple, like the other values made once per admission: immutable, and cheaper to
    make than a frozen dataclass.)"""

    state: IdentityState
    payload_hash: str
    offset: int | None = None


def classify(known: Known | None, payload_hash: str) -> Action:
    if known is None or known.state is IdentityState.ABSENT:
        return Action.PUBLISH
    if known.payload_hash != payload_hash:
        return Action.QUARANTINE
    if known.state is IdentityState.ADMITTED:
        return Action.ABSORB
    return Action.PUBLISH
