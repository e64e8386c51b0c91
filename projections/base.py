"""What a projection is, and the events it sees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Table

from ledger.jcs import canonicalize


@dataclass(frozen=True, slots=True)
class ProjectedEvent:
    """One stored window event as a projection sees it: its stored state, not an object."""

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
