"""The admit command's write path: judge a whole batch in order and record it in one
transaction, streamed to the database in chunks while the next chunk is made (ADR 0011)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.persistence import Mapper, PersistenceError

from ledger.admissions import Admission
from ledger.application.judging import (
    Forms,
    LateMismatch,
    admitted_form,
    judge_after_close,
    judge_arrival,
    record_late,
    to_publish,
)
from ledger.application.results import AdmissionResult
from ledger.application.unit_of_work import StaleWindow, WindowUnitOfWork, replay
from ledger.domain import Window
from ledger.domain.late import LateArrivals, late_arrivals_uuid
from ledger.errors import ChainBroken
from ledger.jcs import CanonicalizationError
from ledger.ports import (
    Chunk,
    IdentityIndex,
    IndexChange,
    Publisher,
    PublishOutcome,
    StreamingRecorder,
)
from ledger.verdicts import IdentityState, Known

# Events per chunk of a streamed save: small enough to overlap, large enough that a statement
# per chunk costs little.
STREAM_CHUNK = 50
LAST_CHUNK = 10


def chunk_bounds(n: int) -> list[tuple[int, int]]:
    """Chunks of STREAM_CHUNK, the last one cut short: what the server still has to do after
    Python made the last chunk is all the caller waits for."""
    bounds = [(start, min(start + STREAM_CHUNK, n)) for start in range(0, n, STREAM_CHUNK)]
    start, stop = bounds[-1]
    if stop - start > LAST_CHUNK:
        bounds[-1:] = [(start, stop - LAST_CHUNK), (stop - LAST_CHUNK, stop)]
    return bounds


class Admitting:
    def __init__(
        self,
        uow: WindowUnitOfWork,
        repository: Repository[UUID],
        mapper: Mapper[UUID],
        recorder: StreamingRecorder,
        index: IdentityIndex,
        publisher: Publisher,
        save: Callable[..., Any],
    ) -> None:
        """`save`: the Application's, for what is recorded outside a window's own stream."""
        self.uow = uow
        self.repository = repository
        self.mapper = mapper
        self.recorder = recorder
        self.index = index
        self.publisher = publisher
        self.save = save

    def window_and_index(
        self, window_id: str, identities: Iterable[str], meanwhile: Callable[[], None]
    ) -> tuple[Window | None, dict[str, Known]]:
        """The window, then its identities' states. A cached window is brought up to date
        (what the library's cache fast-forward does) in the same round trip as the lookup;
        `meanwhile` runs while the database answers."""
        cached = self.uow.cached(window_id)
        if cached is None:
            meanwhile()
            window = self.uow.find(window_id)
            return window, self.index.lookup_identities(window_id, identities)
        newer, known = self.index.catch_up_and_look_up(
            cached.id, cached.version, window_id, identities, meanwhile
        )
        # A hole or an event that does not decode or apply: ChainBroken (the unit of work
        # then drops the cached window, which may hold part of this catch-up).
        replay(window_id, cached, (self.mapper.to_domain_event(s) for s in newer))
        return cached, known

    def admit_once(self, window_id: str, admissions: Sequence[Admission]) -> list[AdmissionResult]:
        forms: Forms = {}

        def make_forms() -> None:
            # What an admission's EventAdmitted will hash, whatever its verdict: made while
            # the database answers the lookup, so the write path only joins and hashes.
            for a in admissions:
                if a.canonical_payload is not None and a.identity not in forms:
                    with contextlib.suppress(CanonicalizationError):  # admit() will say it
                        forms[a.identity] = (a, admitted_form(a))

        window, known = self.window_and_index(
            window_id, (a.identity for a in admissions), make_forms
        )
        if window is not None and window.is_closed:
            return self.after_close(window_id, admissions, known)
        # The index is read after the window, so it is never older; if it is newer (another
        # process committed in between), judging now would build on a stale window: re-run.
        pending = window.pending if window is not None else {}
        if any(k.state is IdentityState.UNKNOWN and i not in pending for i, k in known.items()):
            raise StaleWindow(window_id)

        outcomes = self._publish(window_id, window, to_publish(admissions, known))
        # Record: walk the batch in order; a repeat is judged against the earlier item.
        if window is None:
            window = Window.open(window_id)
        results: list[AdmissionResult] = []
        self.save_stream(window, self._chunks(window, admissions, known, outcomes, forms, results))
        return results

    def after_close(
        self, window_id: str, admissions: Sequence[Admission], known: dict[str, Known]
    ) -> list[AdmissionResult]:
        """Exact duplicates are answered and nothing is recorded; anything else refuses the
        whole batch (`WindowClosed`), after its late mismatches are recorded beside the sealed
        window, never in it (contract s.9)."""
        judged = judge_after_close(window_id, admissions, known)
        if judged.mismatches:
            self.record_late(window_id, judged.mismatches)
        if judged.refusal is not None:
            raise judged.refusal
        return judged.results

    def record_late(self, window_id: str, mismatches: Sequence[LateMismatch]) -> None:
        """Save the mismatches in the window's `LateArrivals`, in one transaction (the identity
        index is not touched: a late arrival changes no identity's state)."""
        late_id = late_arrivals_uuid(window_id)
        try:
            late = self._late_arrivals(window_id, late_id)
            with late.one_moment():
                record_late(late, mismatches)
            self.save(late)
        except BaseException:
            # The cache hands out the object itself: one ahead of storage must not stay there
            # (another process's version conflict, for one, re-runs the command).
            if self.repository.cache is not None:
                with contextlib.suppress(KeyError):
                    self.repository.cache.get(late_id, evict=True)
            raise

    def _late_arrivals(self, window_id: str, late_id: UUID) -> LateArrivals:
        try:
            late: LateArrivals = self.repository.get(late_id)
        except AggregateNotFoundError:
            return LateArrivals.open(window_id)
        except PersistenceError:
            raise  # storage itself: the unit of work re-runs or reports it
        except Exception as exc:
            # A stored late event gone, out of place or undecodable: said, never built on
            # (nor a 500).
            raise ChainBroken(
                f"the stored late arrivals of window {window_id!r} do not replay ({exc!r}); "
                "this late arrival was not recorded",
                window_id=window_id,
            ) from exc
        return late

    def _publish(
        self, window_id: str, window: Window | None, wanted: dict[str, Admission]
    ) -> dict[str, PublishOutcome]:
        if not wanted:  # a batch of pure duplicates never touches the bus
            return {}
        messages = list(wanted.values())  # an Admission is a publishable Message
        next_sequence = (window.admitted if window is not None else 0) + 1
        published = self.publisher.publish(window_id, messages, next_sequence)
        return dict(zip(wanted, published, strict=True))

    def _chunks(
        self,
        window: Window,
        admissions: Sequence[Admission],
        known: dict[str, Known],
        outcomes: dict[str, PublishOutcome],
        forms: Forms,
        results: list[AdmissionResult],
    ) -> Iterator[Chunk]:
        """The batch's events and index changes, a chunk at a time, made as they are sent."""
        with window.one_moment():
            for start, stop in chunk_bounds(len(admissions)):
                changes: dict[str, IndexChange] = {}
                for a in admissions[start:stop]:
                    before = known.get(a.identity)
                    verdict, offset, now = judge_arrival(window, a, before, outcomes, forms)
                    if now is not None:
                        known[a.identity] = now
                        changes[a.identity] = IndexChange(
                            window.window_id,
                            a.identity,
                            now.payload_hash,
                            now.state,
                            now.offset,
                            new=before is None,
                        )
                    results.append(
                        AdmissionResult(
                            a.event_type, a.event_id, a.identity, a.payload_hash, verdict, offset
                        )
                    )
                stored = [self.mapper.to_stored_event(e) for e in window.collect_events()]
                yield stored, list(changes.values())

    def save_stream(self, window: Window, chunks: Iterator[Chunk]) -> None:
        """`Application.save` for a command that makes its events in chunks: the recorder may
        write each chunk while the next is made. The cache bookkeeping is the library's; its
        `notify` hooks are not called (nothing here subscribes to them: the read side follows
        the stored log)."""
        self.recorder.insert_event_stream(chunks)
        if self.repository.cache is not None and not self.repository.fastforward:
            self.repository.cache.put(window.id, window)
