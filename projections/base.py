"""What a projection is, and the events it sees."""

from __future__ import annotations

from hashlib import sha256
from typing import Any, Protocol

import msgspec
from sqlalchemy import Connection, Table

from ledger.jcs import canonicalize


class ProjectedEvent(msgspec.Struct, frozen=True):
    """One stored window event as a projection sees it: its stored state, not an object.
    (A frozen Struct: one is made per event the follower reads, and a frozen dataclass's
    `__init__` cost five times as much.)"""

    position: int  # notification id
    window_id: str
    version: int
    type: str
    recorded_at: str
    fields: dict[str, Any]
    digest: str


class Projection(Protocol):
    name: str

    def tables(self) -> list[Table]:
        """The tables this projection owns (rebuilt together)."""
        ...

    def apply(self, conn: Connection, events: list[ProjectedEvent], t: dict[str, Table]) -> None:
        """Apply a batch in order, inside the caller's transaction.

        `t` maps each owned table's canonical name to the table to write (the live one, or
        its `__next` twin during a blue/green rebuild).
        """
        ...


def to_json(value: Any) -> str:
    return canonicalize(value).decode("utf-8")


_sorted_json = msgspec.json.Encoder(order="sorted").encode


def hashed_to_json(value: Any, canonical_hash: str) -> str:
    """`to_json(value)` for a value whose RFC 8785 bytes hash (SHA-256, hex) to
    `canonical_hash`, as an admitted or quarantined payload's do: msgspec's sorted-key text is
    those bytes whenever its hash says so (no floats, no unsafe integers, keys within the BMP),
    which costs less than canonicalizing; otherwise (or if the stored value was changed) the
    value is canonicalized as `to_json` does."""
    try:
        data = _sorted_json(value)
    except (TypeError, ValueError):
        return to_json(value)  # which says what is wrong with it
    if sha256(data).hexdigest() == canonical_hash:
        return data.decode("utf-8")
    return to_json(value)
