"""The interfaces the application needs of its infrastructure: the bus (publisher) and the
storage beyond the library's recorder (identity index, streamed save).

The bus's message id is always the identity (contract s.3). Adapters live in
`ledger.infrastructure`; the composition root (`service`) chooses them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from ledger.verdicts import IdentityState, Known


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
        uses as the offset (it says so with a class attribute `offsets_from_window = True`: it
        is asked again whenever the window may have moved). Raises `PublishRefused` when the
        bus definitely took nothing.
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class InspectableBus(Protocol):
    """A bus the ledger can check itself against (the embedded publisher *is* the ledger)."""

    def count(self, window_id: str) -> int:
        """How many messages the bus holds for the window."""
        ...

    def messages(self, window_id: str, after: int = 0) -> Iterator[BusMessage]:
        """The window's messages in bus order, from the first after bus sequence `after`."""
        ...


@runtime_checkable
class CheckableBus(Protocol):
    """A bus that can say cheaply whether it answers (`/health`; the embedded one is the
    storage)."""

    def ping(self, timeout: float) -> None:
        """Raise unless the bus answers within about `timeout` seconds."""
        ...


# --- storage beyond the library's recorder ------------------------------------------------


class IndexChange(NamedTuple):
    """The identity's state after the batch; state None removes it (back to ABSENT)."""

    window_id: str
    identity: str
    payload_hash: str
    state: IdentityState | None
    offset: int | None
    # The index had no row for it when the command read the index: a plain INSERT (cheaper
    # than an upsert; a row another writer added meanwhile fails it, and the command re-runs).
    new: bool = False


class Lookup(NamedTuple):
    """A cached window's events after `after_version`, then these identities' states."""

    originator_id: UUID
    after_version: int
    window_id: str
    identities: Sequence[str]


class IdentityIndex(Protocol):
    def lookup_identities(self, window_id: str, identities: Iterable[str]) -> dict[str, Known]: ...

    def catch_up_and_look_up_many(
        self, lookups: Sequence[Lookup], meanwhile: Callable[[], None] = lambda: None
    ) -> list[tuple[Sequence[StoredEvent], dict[str, Known]]]:
        """For each cached window, its events after `after_version`, then the identities'
        states: read in that order (the index never older than the events), all windows in one
        round trip where the database allows (a group's windows, ADR 0020). `meanwhile` runs
        while the database answers."""
        ...

    def count_identities(self, window_id: str) -> dict[str, int]: ...


class WindowSnapshot(NamedTuple):
    """A window's state at one version, encoded (a cache of its history: ADR 0017)."""

    originator_id: UUID
    version: int
    state: bytes


class Chunk(NamedTuple):
    """Events made by one part of a command, the index rows that part changed and, on the
    last chunk, the window's snapshot when one is due."""

    events: Sequence[StoredEvent]
    changes: Sequence[IndexChange]
    snapshot: WindowSnapshot | None = None


class SnapshotStore(Protocol):
    """Each window's latest snapshot, one row a window, written in the transaction of the
    events it follows (`insert_event_stream`, or `snapshot=` to `Application.save`); a newer
    one replaces it, an older one never does."""

    def latest_snapshot(self, originator_id: UUID) -> WindowSnapshot | None: ...

    def discard_snapshot(self, originator_id: UUID, version: int) -> None:
        """Remove the window's snapshot if it is still the one at `version`."""
        ...


@dataclass
class LockedRead:
    """Reads made once the write lock is held, before the first chunk is made (ADR 0033):
    `found` holds what `catch_up_and_look_up_many(lookups)` would answer, a lookup each."""

    lookups: Sequence[Lookup]
    found: list[tuple[Sequence[StoredEvent], dict[str, Known]]] | None = None


class StreamingRecorder(Protocol):
    def insert_event_stream(
        self, chunks: Iterable[Chunk], lock_first: bool = False, read: LockedRead | None = None
    ) -> None:
        """Record every chunk's events and index changes, in order, in one transaction.

        The chunks are made while the transaction runs (a generator doing the domain work), so
        a recorder may send each one to the database before the next is made. A later chunk's
        change of an identity overrides an earlier one's. `lock_first`: hold the write lock
        before the first chunk is made, so that what the generator reads then cannot be
        outdated by another writer before the commit (ADR 0022); `read` (with `lock_first`):
        make these reads under the lock, in the same round trip as taking it, before the
        first chunk is made (ADR 0033).
        """
        ...


# --- evidence ------------------------------------------------------------------------------


class ReceiptSigner(Protocol):
    """Signs receipts (Ed25519 in production): contract s.9."""

    alg: str
    key_id: str
    public_key_pem: str

    def sign(self, data: bytes) -> str:
        """The signature over `data`, base64."""
        ...


@runtime_checkable
class ReceiptWitness(Protocol):
    """A bus that keeps a copy of each signed receipt, outside the database."""

    def witness(self, window_id: str, receipt: bytes) -> None: ...
