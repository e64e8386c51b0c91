"""The bus behind a small interface. The message id is always the identity (contract s.3)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable


class Message(Protocol):
    """What a publisher needs of a message. An `Admission` is one as it stands (no copy per
    admission on the hot path); `OutgoingMessage` is one built from stored history."""

    @property
    def window_id(self) -> str: ...
    @property
    def identity(self) -> str: ...  # the bus message id
    @property
    def event_type(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def payload_hash(self) -> str: ...


class OutgoingMessage(NamedTuple):
    window_id: str
    identity: str  # the bus message id
    event_type: str
    event_id: str
    payload: dict[str, Any]
    payload_hash: str


class Published(NamedTuple):
    offset: int


@dataclass(frozen=True, slots=True)
class Unknown:
    """Timed out or failed ambiguously: the bus may or may not hold the message."""

    reason: str


@dataclass(frozen=True, slots=True)
class BusMessage:
    """A message as the bus holds it; `message` is None when its body is not ours."""

    offset: int
    identity: str
    message: OutgoingMessage | None


@dataclass(frozen=True, slots=True)
class Superseded:
    """The bus already holds this identity with another payload (the first stays the truth)."""

    offset: int
    original: BusMessage


PublishOutcome = Published | Unknown | Superseded


class Publisher(Protocol):
    def publish(
        self, window_id: str, messages: Sequence[Message], next_sequence: int
    ) -> list[PublishOutcome]:
        """Publish in order; one outcome per message.

        `next_sequence` is the window's next admission sequence, which the embedded publisher
        uses as the offset. Raises `PublishRefused` when the bus definitely took nothing.
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class InspectableBus(Protocol):
    """A bus the ledger can check itself against (the embedded publisher *is* the ledger)."""

    def count(self, window_id: str) -> int:
        """How many messages the bus holds for the window."""
        ...

    def messages(self, window_id: str) -> Iterator[BusMessage]:
        """The window's messages in bus order."""
        ...


class EmbeddedPublisher:
    """The ledger is the stream: offsets are the window's dense admission sequence."""

    name = "embedded"

    def publish(
        self, window_id: str, messages: Sequence[Message], next_sequence: int
    ) -> list[PublishOutcome]:
        return [Published(next_sequence + i) for i in range(len(messages))]

    def close(self) -> None:
        pass
