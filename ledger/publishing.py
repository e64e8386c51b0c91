"""The bus behind a small interface. The message id is always the identity (contract s.3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    window_id: str
    identity: str  # the bus message id
    event_type: str
    event_id: str
    payload: dict[str, Any]
    payload_hash: str


@dataclass(frozen=True, slots=True)
class Published:
    offset: int


@dataclass(frozen=True, slots=True)
class Unknown:
    """Timed out or failed ambiguously: the bus may or may not hold the message."""

    reason: str


PublishOutcome = Published | Unknown


class Publisher(Protocol):
    def publish(
        self, window_id: str, messages: Sequence[OutgoingMessage], next_sequence: int
    ) -> list[PublishOutcome]:
        """Publish in order; one outcome per message.

        `next_sequence` is the window's next admission sequence, which the embedded publisher
        uses as the offset. Raises `PublishRefused` when the bus definitely took nothing.
        """
        ...

    def close(self) -> None: ...


class EmbeddedPublisher:
    """The ledger is the stream: offsets are the window's dense admission sequence."""

    name = "embedded"

    def publish(
        self, window_id: str, messages: Sequence[OutgoingMessage], next_sequence: int
    ) -> list[PublishOutcome]:
        return [Published(next_sequence + i) for i in range(len(messages))]

    def close(self) -> None:
        pass
