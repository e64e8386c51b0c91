"""The ledger's application service: admit, close, reconcile, and the write side's reads.

Sync, like eventsourcing: callers in an event loop run it in a thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from copy import deepcopy
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, NamedTuple, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Mapper,
    OperationalError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import resolve_topic

from ledger.admissions import Admission, identity_of
from ledger.domain import (
    GENESIS_DIGEST,
    META_KEYS,
    AdmittedForm,
    Window,
    chain_digest,
    format_recorded_at,
    window_uuid,
)
from ledger.errors import (
    BusLedgerMismatch,
    BusUnavailable,
    Contention,
    LedgerError,
    PublishRefused,
    WindowClosed,
    WindowNotFound,
)
from ledger.infrastructure import fastjson
from ledger.infrastructure.recorders import (
    Chunk,
    IdentityIndex,
    IndexChange,
    StreamingRecorder,
)
from ledger.infrastructure.transcoder import JSONStateTranscoder, LedgerMapper
from ledger.jcs import CanonicalizationError, canonicalize, sha256_hex
from ledger.publishing import (
    EmbeddedPublisher,
    InspectableBus,
    Message,
    OutgoingMessage,
    Published,
    Publisher,
    PublishOutcome,
    Superseded,
)
from ledger.verdicts import Action, IdentityState, Known, Verdict, classify

MAX_ATTEMPTS = 20
TRANSIENT_ATTEMPTS = 10  # as eventsourcing's own insert retries
TRANSIENT_WAIT_SECONDS = 0.2
# Events per chunk of a streamed save (see _save_stream): small enough to overlap, large
# enough that a statement per chunk costs little.
STREAM_CHUNK = 50
LAST_CHUNK = 10
HISTORY_PAGE = 1000
_LOCK_STRIPES = 64


class AdmissionResult(NamedTuple):
    event_type: str
    event_id: str
    identity: str
    payload_hash: str
    verdict: Verdict
    offset: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "event_id": self.event_id,
            "identity": self.identity,
            "payload_hash": self.payload_hash,
            "verdict": self.verdict.value,
            "offset": self.offset,
        }


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    events: int
    head: str
    first_bad_version: int | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _record_admitted(
    window: Window,
    m: Message,
    offset: int,
    source: dict[str, Any] | None,
    form: AdmittedForm | None = None,
) -> None:
    """Record an identity as admitted at `offset`: an arrival, or a message the bus holds."""
    window.admit(
        identity=m.identity,
        event_type=m.event_type,
        event_id=m.event_id,
        payload=m.payload,
        payload_hash=m.payload_hash,
        offset=offset,
        source=source,
        canonical_payload=m.canonical_payload if isinstance(m, Admission) else None,
        form=form,
    )


def _chunk_bounds(n: int) -> list[tuple[int, int]]:
    """Chunks of STREAM_CHUNK, the last one cut short: what the server still has to do after
    Python made the last chunk is all the caller waits for."""
    bounds = [(start, min(start + STREAM_CHUNK, n)) for start in range(0, n, STREAM_CHUNK)]
    start, stop = bounds[-1]
    if stop - start > LAST_CHUNK:
        bounds[-1:] = [(start, stop - LAST_CHUNK), (stop - LAST_CHUNK, stop)]
    return bounds


# identity -> (the admission it was made from, the form of its EventAdmitted)
Forms = dict[str, tuple[Admission, AdmittedForm]]


def _admitted_form(a: Admission) -> AdmittedForm:
    assert a.canonical_payload is not None
    return Window.admitted_form(
        identity=a.identity,
        event_type=a.event_type,
        event_id=a.event_id,
        payload_hash=a.payload_hash,
        source=a.source,
        canonical_payload=a.canonical_payload,
    )


def _record_quarantined(window: Window, a: Admission, original_hash: str) -> None:
    """Record an arrival whose identity is known with another payload (the first stays)."""
    window.quarantine(
        identity=a.identity,
        event_type=a.event_type,
        event_id=a.event_id,
        original_hash=original_hash,
        received_hash=a.payload_hash,
        received_payload=a.payload,
        source=a.source,
        canonical_payload=a.canonical_payload,
    )


class StaleWindow(Exception):
    """Another process moved the window on between our reads: re-run the command."""


@lru_cache(maxsize=64)
def _type_name(topic: str) -> str:
    return str(resolve_topic(topic).__name__)


class Ledger(Application[UUID]):
    name = "ledger"

    def __init__(self, env: dict[str, str], publisher: Publisher | None = None) -> None:
        fastjson.install()
        super().__init__(env)
        self.publisher: Publisher = publisher or EmbeddedPublisher()
        self.index: IdentityIndex = self.recorder  # type: ignore[assignment]
        # One writer per window in this process; other processes are caught by version
        # conflicts. Striped, so memory stays bounded however many windows there are.
        self._locks = [threading.RLock() for _ in range(_LOCK_STRIPES)]

    def construct_mapper(self) -> Mapper[UUID]:
        return self.factory.mapper(
            transcoder=self.construct_transcoder(), mapper_class=LedgerMapper
        )

    def construct_transcoder(self) -> Transcoder:
        return JSONStateTranscoder()

    # --- helpers ------------------------------------------------------------------------

    def _lock(self, window_id: str) -> threading.RLock:
        return self._locks[hash(window_id) % _LOCK_STRIPES]

    def _find(self, window_id: str) -> Window | None:
        try:
            window: Window = self.repository.get(window_uuid(window_id))
        except AggregateNotFoundError:
            return None
        return window

    def _evict(self, window_id: str, *, only_if_dirty: bool = False) -> None:
        # The cache hands out the object itself (no deep copy): a failed command must not
        # leave its rejected events in it. A refusal that changed nothing keeps the cached
        # window (reloading it costs a replay of the whole history).
        cache = self.repository.cache
        if cache is None:
            return
        with contextlib.suppress(KeyError):
            cached = cast("Window", cache.get(window_uuid(window_id)))
            if only_if_dirty and not cached.pending_events:
                return
            cache.get(window_uuid(window_id), evict=True)

    def _run(self, window_id: str, command: Any) -> Any:
        """Run a command under the window's lock; re-run it whole on a version conflict."""
        with self._lock(window_id):
            transient = 0
            for _ in range(MAX_ATTEMPTS):
                try:
                    return command()
                except (IntegrityError, StaleWindow):
                    self._evict(window_id)
                except (OperationalError, InterfaceError):
                    # A dropped connection or a lock timeout: retried as the library retries
                    # its own inserts (the streamed save is not wrapped by its decorator).
                    self._evict(window_id)
                    transient += 1
                    if transient >= TRANSIENT_ATTEMPTS:
                        raise
                    time.sleep(TRANSIENT_WAIT_SECONDS)
                except LedgerError:
                    # A refusal comes before any save; keep the window unless it was changed.
                    self._evict(window_id, only_if_dirty=True)
                    raise
                except BaseException:
                    # Anything else may come from inside save, which has already taken the
                    # pending events: the object can be ahead of storage without showing it.
                    self._evict(window_id)
                    raise
            raise Contention(
                f"window {window_id!r} kept changing under this command; nothing was recorded"
            )

    def _window(self, window_id: str) -> Window:
        """The cached window itself: only for commands, which hold the window's lock."""
        window = self._find(window_id)
        if window is None:
            raise WindowNotFound(f"no window {window_id!r}")
        return window

    def has_window(self, window_id: str) -> bool:
        """Whether the window exists (one indexed read; the cache is not touched)."""
        return bool(self.recorder.select_events(window_uuid(window_id), limit=1))

    def get_window(self, window_id: str) -> Window:
        """A snapshot for readers. The cache hands out the live object (no deep copy), and a
        read that fast-forwarded it in the middle of another thread's command would let that
        command append on top of a version it never judged against: so take the lock, copy."""
        with self._lock(window_id):
            return deepcopy(self._window(window_id))

    # --- commands -----------------------------------------------------------------------

    def admit(self, window_id: str, admissions: Sequence[Admission]) -> list[AdmissionResult]:
        """Judge a whole batch in order and record it in one transaction (contract s.3)."""
        return list(self._run(window_id, lambda: self._admit_once(window_id, admissions)))

    def _window_and_index(
        self, window_id: str, identities: Iterable[str], meanwhile: Callable[[], None]
    ) -> tuple[Window | None, dict[str, Known]]:
        """The window, then its identities' states. A cached window is brought up to date
        (what the library's cache fast-forward does) in the same round trip as the lookup;
        `meanwhile` runs while the database answers."""
        cached: Window | None = None
        if self.repository.cache is not None:
            with contextlib.suppress(KeyError):
                cached = cast("Window", self.repository.cache.get(window_uuid(window_id)))
        if cached is None:
            meanwhile()
            window = self._find(window_id)
            return window, self.index.lookup_identities(window_id, identities)
        newer, known = self.index.catch_up_and_look_up(
            cached.id, cached.version, window_id, identities, meanwhile
        )
        for stored in newer:
            cast("Window.Event", self.mapper.to_domain_event(stored)).mutate(cached)
        return cached, known

    def _admit_once(self, window_id: str, admissions: Sequence[Admission]) -> list[AdmissionResult]:
        forms: Forms = {}

        def make_forms() -> None:
            # What an admission's EventAdmitted will hash, whatever its verdict: made while
            # the database answers the lookup, so the write path only joins and hashes.
            for a in admissions:
                if a.canonical_payload is not None and a.identity not in forms:
                    with contextlib.suppress(CanonicalizationError):  # admit() will say it
                        forms[a.identity] = (a, _admitted_form(a))

        window, known = self._window_and_index(
            window_id, (a.identity for a in admissions), make_forms
        )

        if window is not None and window.is_closed:
            return self._judge_closed(window_id, admissions, known)
        # The index is read after the window, so it is never older; if it is newer (another
        # process committed in between), judging now would build on a stale window: re-run.
        pending = window.pending if window is not None else {}
        if any(k.state is IdentityState.UNKNOWN and i not in pending for i, k in known.items()):
            raise StaleWindow(window_id)

        # Plan: the first arrival of each identity that needs the bus is published, in order.
        to_publish: dict[str, Admission] = {}
        for a in admissions:
            if classify(known.get(a.identity), a.payload_hash) is Action.PUBLISH:
                to_publish.setdefault(a.identity, a)
        outcomes: dict[str, PublishOutcome] = {}
        if to_publish:  # a batch of pure duplicates never touches the bus
            messages = list(to_publish.values())  # an Admission is a publishable Message
            next_sequence = (window.admitted if window is not None else 0) + 1
            published = self.publisher.publish(window_id, messages, next_sequence)
            outcomes = dict(zip(to_publish, published, strict=True))

        # Record: walk the batch in order; a repeat is judged against the earlier item.
        if window is None:
            window = Window.open(window_id)
        results: list[AdmissionResult] = []

        def chunks() -> Iterator[Chunk]:
            assert window is not None
            with window.one_moment():
                for start, stop in _chunk_bounds(len(admissions)):
                    changes: dict[str, IndexChange] = {}
                    for a in admissions[start:stop]:
                        before = known.get(a.identity)
                        verdict, offset, now = self._apply(window, a, before, outcomes, forms)
                        if now is not None:
                            known[a.identity] = now
                            changes[a.identity] = IndexChange(
                                window_id,
                                a.identity,
                                now.payload_hash,
                                now.state,
                                now.offset,
                                new=before is None,
                            )
                        results.append(
                            AdmissionResult(
                                a.event_type,
                                a.event_id,
                                a.identity,
                                a.payload_hash,
                                verdict,
                                offset,
                            )
                        )
                    stored = [self.mapper.to_stored_event(e) for e in window.collect_events()]
                    yield stored, list(changes.values())

        self._save_stream(window, chunks())
        return results

    def _save_stream(self, window: Window, chunks: Iterator[Chunk]) -> None:
        """`Application.save` for a command that makes its events in chunks: the recorder may
        write each chunk while the next is made. The cache bookkeeping is the library's; its
        `notify` hooks are not called (nothing here subscribes to them: the read side follows
        the stored log)."""
        cast("StreamingRecorder", self.recorder).insert_event_stream(chunks)
        if self.repository.cache is not None and not self.repository.fastforward:
            self.repository.cache.put(window.id, window)

    @staticmethod
    def _apply(
        window: Window,
        a: Admission,
        before: Known | None,
        outcomes: dict[str, PublishOutcome],
        forms: Forms | None = None,
    ) -> tuple[Verdict, int | None, Known | None]:
        """Record what one arrival means; return its verdict, offset and the new known state."""
        if before is None and type(outcome := outcomes.get(a.identity)) is Published:
            # The common case, decided without the general walk below: a new identity the
            # bus acknowledged (what the walk would conclude, in fewer steps per admission).
            del outcomes[a.identity]
            made = forms.get(a.identity) if forms else None
            form = made[1] if made is not None and made[0] is a else None
            _record_admitted(window, a, outcome.offset, a.source, form)
            return (
                Verdict.ADMITTED,
                outcome.offset,
                Known(IdentityState.ADMITTED, a.payload_hash, outcome.offset),
            )
        action = classify(before, a.payload_hash)
        if action is Action.ABSORB:
            assert before is not None and before.offset is not None
            window.absorb_duplicate(
                identity=a.identity,
                payload_hash=a.payload_hash,
                offset=before.offset,
                source=a.source,
            )
            return Verdict.DUPLICATE, before.offset, None
        if action is Action.QUARANTINE:
            assert before is not None
            _record_quarantined(window, a, before.payload_hash)
            return Verdict.QUARANTINED, None, None
        # Each identity's outcome is used once: a same-hash repeat later in the batch finds the
        # identity ADMITTED (a duplicate) or still UNKNOWN (nothing new).
        outcome = outcomes.pop(a.identity, None)
        if outcome is None:
            return Verdict.PUBLISH_UNKNOWN, None, None
        was_unknown = before is not None and before.state is IdentityState.UNKNOWN
        if isinstance(outcome, Published):
            if was_unknown:
                window.reconcile(identity=a.identity, offset=outcome.offset)
            else:
                _record_admitted(window, a, outcome.offset, a.source)
            admitted = Known(IdentityState.ADMITTED, a.payload_hash, outcome.offset)
            return Verdict.ADMITTED, outcome.offset, admitted
        if isinstance(outcome, Superseded):
            original = outcome.original.message
            if was_unknown or original is None:
                return Verdict.PUBLISH_UNKNOWN, None, None
            # Another writer published this identity first with another payload and has not
            # recorded it here: the bus's message is the truth; adopt it, judge ours against it.
            _record_admitted(window, original, outcome.offset, None)
            _record_quarantined(window, a, original.payload_hash)
            adopted = Known(IdentityState.ADMITTED, original.payload_hash, outcome.offset)
            return Verdict.QUARANTINED, None, adopted
        if was_unknown:
            return Verdict.PUBLISH_UNKNOWN, None, None
        window.record_publish_unknown(
            identity=a.identity,
            event_type=a.event_type,
            event_id=a.event_id,
            payload=a.payload,
            payload_hash=a.payload_hash,
            reason=outcome.reason,
            source=a.source,
        )
        return Verdict.PUBLISH_UNKNOWN, None, Known(IdentityState.UNKNOWN, a.payload_hash)

    def _judge_closed(
        self, window_id: str, admissions: Sequence[Admission], known: dict[str, Known]
    ) -> list[AdmissionResult]:
        """After close only exact duplicates are answered, and nothing is recorded."""
        results = []
        for a in admissions:
            k = known.get(a.identity)
            if (
                k is None
                or k.state is not IdentityState.ADMITTED
                or k.payload_hash != a.payload_hash
            ):
                raise WindowClosed(
                    f"window {window_id!r} is closed; only exact duplicates are answered "
                    f"({a.event_type}/{a.event_id} is not one)"
                )
            results.append(
                AdmissionResult(
                    a.event_type,
                    a.event_id,
                    a.identity,
                    a.payload_hash,
                    Verdict.DUPLICATE,
                    k.offset,
                )
            )
        return results

    def close_window(self, window_id: str) -> dict[str, Any]:
        """Close the window (refused while anything is UNKNOWN); closing again records nothing."""

        def command() -> dict[str, Any]:
            window = self._window(window_id)
            if not window.is_closed:
                if window.pending:  # refuse before paying for the chain check
                    window.close()
                if isinstance(self.publisher, InspectableBus):
                    on_bus = self.publisher.count(window_id)
                    if on_bus != window.admitted:
                        raise BusLedgerMismatch(window_id, on_bus, window.admitted)
                check = self.verify(window_id)
                intact = check.ok and check.head == window.chain_head
                window.close(chain_verified=intact, first_bad_version=check.first_bad_version)
                self.save(window)
                # The chain was just verified: no second pass over the history for the gate.
                return self._receipt(window, "PASS" if intact else "FAIL")
            return self.receipt(window_id)

        result: dict[str, Any] = self._run(window_id, command)
        return result

    def reconcile(self, window_id: str) -> dict[str, Any]:
        """Resolve the window against the bus.

        Each UNKNOWN identity is re-published with its message id (the bus answers the stored
        sequence if it had it); then, where the bus can be inspected and holds more messages
        than the ledger admitted, the messages the ledger lacks (a publish whose answer was
        lost in a crash) are adopted from the messages themselves.
        """

        def command() -> dict[str, Any]:
            window = self._window(window_id)
            if window.is_closed:
                return {"reconciled": [], "still_unknown": [], "adopted": [], "unadoptable": []}
            changes: list[IndexChange] = []
            reconciled, still_unknown = self._republish_pending(window, changes)
            adopted, unadoptable = self._adopt_from_bus(window, changes)
            if changes:
                self.save(window, index_changes=changes)
            return {
                "reconciled": reconciled,
                "still_unknown": still_unknown,
                "adopted": adopted,
                "unadoptable": unadoptable,
            }

        result: dict[str, Any] = self._run(window_id, command)
        return result

    def _republish_pending(
        self, window: Window, changes: list[IndexChange]
    ) -> tuple[list[str], list[str]]:
        if not window.pending:
            return [], []
        unknowns = [self._publish_unknown_event(window, i) for i in window.pending]
        messages = [
            OutgoingMessage(
                window.window_id,
                e["identity"],
                e["event_type"],
                e["event_id"],
                e["payload"],
                e["payload_hash"],
            )
            for e in unknowns
        ]
        outcomes = self.publisher.publish(window.window_id, messages, window.admitted + 1)
        reconciled, still_unknown = [], []
        for m, outcome in zip(messages, outcomes, strict=True):
            if isinstance(outcome, Published):
                window.reconcile(identity=m.identity, offset=outcome.offset)
                reconciled.append(m.identity)
                changes.append(
                    IndexChange(
                        window.window_id,
                        m.identity,
                        m.payload_hash,
                        IdentityState.ADMITTED,
                        outcome.offset,
                    )
                )
            else:
                still_unknown.append(m.identity)
        return reconciled, still_unknown

    def _adopt_from_bus(
        self, window: Window, changes: list[IndexChange]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        bus = self.publisher
        if not isinstance(bus, InspectableBus):
            return [], []
        try:
            if bus.count(window.window_id) == window.admitted:
                return [], []
            held = list(bus.messages(window.window_id))
        except (BusUnavailable, PublishRefused):
            # Adoption waits for a bus that answers; what the re-publish settled still counts.
            return [], []
        known = self.index.lookup_identities(window.window_id, (m.identity for m in held))
        known.update({c.identity: Known(IdentityState.ADMITTED, c.payload_hash) for c in changes})
        adopted: list[str] = []
        unadoptable: list[dict[str, Any]] = []
        for held_message in held:
            k = known.get(held_message.identity)
            if k is not None and k.state is not IdentityState.ABSENT:
                if k.state is IdentityState.ADMITTED and k.offset not in (
                    None,
                    held_message.offset,
                ):
                    unadoptable.append(
                        {
                            "offset": held_message.offset,
                            "identity": held_message.identity,
                            "reason": f"second message for an identity admitted at {k.offset}",
                        }
                    )
                continue
            m = held_message.message
            problem = self._not_adoptable(window.window_id, held_message)
            if m is None or problem:
                unadoptable.append(
                    {
                        "offset": held_message.offset,
                        "identity": held_message.identity,
                        "reason": problem or "message body is not a ledger admission",
                    }
                )
                continue
            _record_admitted(window, m, held_message.offset, None)
            known[m.identity] = Known(IdentityState.ADMITTED, m.payload_hash, held_message.offset)
            changes.append(
                IndexChange(
                    window.window_id,
                    m.identity,
                    m.payload_hash,
                    IdentityState.ADMITTED,
                    held_message.offset,
                )
            )
            adopted.append(m.identity)
        return adopted, unadoptable

    @staticmethod
    def _not_adoptable(window_id: str, held: Any) -> str | None:
        """Adopt only what recomputes: the identity and the hash come from the body itself."""
        m = held.message
        if m is None:
            return None
        if m.window_id != window_id:
            return f"message names window {m.window_id!r}"
        if identity_of(window_id, m.event_type, m.event_id) != held.identity:
            return "message id is not the identity of its window, event_type and event_id"
        try:
            if sha256_hex(canonicalize(m.payload)) != m.payload_hash:
                return "payload does not hash to its payload_hash"
        except CanonicalizationError as exc:
            return f"payload cannot be canonicalized: {exc}"
        return None

    def _publish_unknown_event(self, window: Window, identity: str) -> dict[str, Any]:
        version = window.pending[identity]
        (stored,) = self.recorder.select_events(window.id, gt=version - 1, lte=version)
        return self._fields(stored)

    # --- reads of the write side --------------------------------------------------------

    def _state(self, stored: StoredEvent) -> dict[str, Any]:
        state: dict[str, Any] = self.mapper.transcoder.decode(stored.state)
        return state

    def _fields(self, stored: StoredEvent) -> dict[str, Any]:
        state = self._state(stored)
        return {k: v for k, v in state.items() if k not in META_KEYS}

    def _stored_events(self, window_id: str, after: int = 0) -> Iterator[StoredEvent]:
        """The window's stored events in version order, a page at a time (bounded memory)."""
        uuid = window_uuid(window_id)
        while True:
            page = self.recorder.select_events(uuid, gt=after, limit=HISTORY_PAGE)
            yield from page
            if len(page) < HISTORY_PAGE:
                return
            after = page[-1].originator_version

    def history(
        self, window_id: str, *, after: int = 0, limit: int = HISTORY_PAGE
    ) -> list[dict[str, Any]]:
        """The window's events as stored: what a reviewer needs to recompute the chain."""
        stored_events = self.recorder.select_events(window_uuid(window_id), gt=after, limit=limit)
        if not stored_events and after == 0:
            raise WindowNotFound(f"no window {window_id!r}")
        return [self._history_item(s) for s in stored_events]

    def iter_history(self, window_id: str) -> Iterator[dict[str, Any]]:
        found = False
        for stored in self._stored_events(window_id):
            found = True
            yield self._history_item(stored)
        if not found:
            raise WindowNotFound(f"no window {window_id!r}")

    def _history_item(self, stored: StoredEvent) -> dict[str, Any]:
        state = self._state(stored)
        return {
            "version": stored.originator_version,
            "type": _type_name(stored.topic),
            "recorded_at": format_recorded_at(state["timestamp"]),
            "fields": {k: v for k, v in state.items() if k not in META_KEYS},
            "prev_digest": state["prev_digest"],
            "digest": state["digest"],
        }

    def verify(self, window_id: str) -> Verification:
        """Recompute the hash chain from the stored events; report the first bad version."""
        head = GENESIS_DIGEST
        count = 0
        first_bad: int | None = None
        for stored in self._stored_events(window_id):
            count += 1
            version = stored.originator_version
            try:
                item = self._history_item(stored)
                recomputed = chain_digest(
                    head, version, item["type"], item["recorded_at"], item["fields"]
                )
                intact = (
                    version == count
                    and item["prev_digest"] == head
                    and item["digest"] == recomputed
                )
            except Exception:  # undecodable state is tampering too
                intact, recomputed = False, head
            if not intact and first_bad is None:
                first_bad = version
            head = recomputed
        if count == 0:
            raise WindowNotFound(f"no window {window_id!r}")
        return Verification(first_bad is None, count, head, first_bad)

    def receipt(self, window_id: str) -> dict[str, Any]:
        window = self.get_window(window_id)
        return self._receipt(window, self.gate(window_id, window)["status"])

    @staticmethod
    def _receipt(window: Window, gate: str) -> dict[str, Any]:
        return {
            "window_id": window.window_id,
            "status": window.status,
            "gate": gate,
            "counts": window.counts(),
            "bus_offsets": window.bus_offset_range(),
            "source_offsets": window.source_offset_ranges(),
            "opened_at": window.opened_at,
            "closed_at": window.closed_at,
            "events": window.version,
            "chain_head": window.chain_head,
        }

    def gate(self, window_id: str, window: Window | None = None) -> dict[str, Any]:
        """The gate as the write side sees it: the chain is recomputed for a closed window."""
        window = window or self.get_window(window_id)
        reasons: list[str] = []
        if not window.is_closed:
            if window.pending:
                status = "BLOCKED"
                reasons.append(f"{len(window.pending)} identities have an unknown publish outcome")
            else:
                status = "OPEN"
                reasons.append("window is not closed")
            return {"window_id": window_id, "status": status, "reasons": reasons}
        verification = self.verify(window_id)
        if not verification.ok:
            reasons.append(f"hash chain broken at version {verification.first_bad_version}")
        return {
            "window_id": window_id,
            "status": "FAIL" if reasons else "PASS",
            "reasons": reasons,
        }
