"""The admit command's write path: judge a whole batch in order and record it in one
transaction, streamed to the database in chunks while the next chunk is made (ADR 0011)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.application import Repository
from eventsourcing.persistence import Mapper

from ledger.admissions import Admission, identities_of
from ledger.application.chunking import chunk_bounds
from ledger.application.judging import (
    Forms,
    admitted_form,
    judge_arrival,
    to_publish,
)
from ledger.application.late_arrivals import LateArrivalsRecorder
from ledger.application.loading import WindowLoader
from ledger.application.reading import ReadAhead, locked_read, read_all_ahead, unread_windows
from ledger.application.results import AdmissionResult
from ledger.application.unit_of_work import StaleWindow, WindowUnitOfWork, replay
from ledger.domain import Window
from ledger.errors import ChainBroken, LedgerError
from ledger.jcs import CanonicalizationError
from ledger.ports import (
    Chunk,
    IdentityIndex,
    IndexChange,
    Lookup,
    Publisher,
    PublishOutcome,
    StreamingRecorder,
)
from ledger.verdicts import IdentityState, Known


class GroupFailure(Exception):
    """Requests of a group refused while it was being written (by their position in the
    group); nothing of the group was recorded: the rest re-runs without them."""

    def __init__(self, refusals: dict[int, BaseException]) -> None:
        super().__init__(f"{len(refusals)} requests of the group were refused")
        self.refusals = refusals


@dataclass
class _Plan:
    """One window's part of a group: what its chunks are made from."""

    window: Window
    since: int
    admissions: Sequence[Admission]
    known: dict[str, Known]
    outcomes: dict[str, PublishOutcome]
    forms: Forms
    positions: list[int]
    results: list[AdmissionResult] = field(default_factory=list)


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
        loader: WindowLoader,
    ) -> None:
        """`save`: the Application's, for what is recorded outside a window's own stream;
        `loader`: whose `due` says when a window's snapshot goes with its events."""
        self.uow = uow
        self.repository = repository
        self.mapper = mapper
        self.recorder = recorder
        self.index = index
        self.publisher = publisher
        self.late = LateArrivalsRecorder(repository, save)
        self.loader = loader

    def window_and_index(
        self,
        window_id: str,
        identities: Iterable[str],
        meanwhile: Callable[[], None],
        read_ahead: ReadAhead | None = None,
    ) -> tuple[Window | None, dict[str, Known]]:
        """The window, then its identities' states. A cached window is brought up to date
        (what the library's cache fast-forward does) in the same round trip as the lookup;
        `meanwhile` runs while the database answers."""
        cached = self.uow.cached(window_id)
        if cached is None:
            meanwhile()
            window = self.uow.find(window_id)
            return window, self.index.lookup_identities(window_id, identities)
        read = None if read_ahead is None else read_ahead.get(window_id)
        if read is not None and read[0] == cached.version:
            meanwhile()
            _, newer, known = read
        else:
            lookup = Lookup(cached.id, cached.version, window_id, list(identities))
            ((newer, known),) = self.index.catch_up_and_look_up_many([lookup], meanwhile)
        # A hole or an event that does not decode or apply: ChainBroken (the unit of work
        # then drops the cached window, which may hold part of this catch-up).
        replay(window_id, cached, (self.mapper.to_domain_event(s) for s in newer))
        return cached, known

    def admit_once(
        self, window_id: str, admissions: Sequence[Admission], judge_under_lock: bool = False
    ) -> list[AdmissionResult]:
        (outcome,) = self.admit_group([(window_id, admissions)], judge_under_lock)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def admit_group(
        self,
        requests: Sequence[tuple[str, Sequence[Admission]]],
        judge_under_lock: bool = False,
        read_first: bool = True,
    ) -> list[list[AdmissionResult] | BaseException]:
        """Judge every request in order and record them all in one transaction; each
        request's results, or the refusal of that request alone (nothing of it recorded).

        The requests of one window are judged as one batch in arrival order: exactly what
        a serial run of them gives. Raises what fails the whole group (a version conflict,
        StaleWindow, storage) and GroupFailure for requests refused while being written.

        `judge_under_lock` (a re-run after a lost race, ADR 0022): the windows are read and
        the bus asked as usual, then read again and judged once the transaction holds the
        table lock, so that no other process can win the race again. `read_first=False`
        (with it, ADR 0033): when the bus is the ledger itself and every window is cached and
        open, the read before the lock is skipped; whatever that misses (a window closed
        meanwhile) ends the attempt as a lost race, and the re-run reads first."""
        outcomes: list[list[AdmissionResult] | BaseException | None] = [None] * len(requests)
        by_window: dict[str, list[int]] = {}
        for position, (window_id, _) in enumerate(requests):
            by_window.setdefault(window_id, []).append(position)
        plans: list[_Plan] = []
        planned: list[str] = []  # the window of each plan
        combined_by_window: dict[str, Sequence[Admission]] = {
            # One request's batch as given: a `PreparedOnUse` batch stays unprepared until its
            # window's lookup is on its way (ADR 0040).
            window_id: (
                requests[positions[0]][1]
                if len(positions) == 1
                else [a for p in positions for a in requests[p][1]]
            )
            for window_id, positions in by_window.items()
        }
        unread = (
            None
            if read_first or not judge_under_lock
            else unread_windows(self.uow, self.publisher, by_window)
        )
        read_ahead = {} if unread else read_all_ahead(self.uow, self.index, combined_by_window)
        for window_id, positions in by_window.items():
            combined = combined_by_window[window_id]
            try:
                plan = (
                    _Plan(
                        unread[window_id],
                        unread[window_id].version,
                        combined,
                        {},
                        {},
                        {},
                        positions,
                    )
                    if unread
                    else self._plan(window_id, combined, positions, read_ahead)
                )
            except LedgerError as refusal:
                if isinstance(refusal, ChainBroken):
                    # A cached window's catch-up may have applied part of what it read.
                    self.uow.evict(window_id)
                for p in positions:
                    outcomes[p] = refusal
                continue
            if isinstance(plan, _Plan):
                plans.append(plan)
                planned.append(window_id)
            else:  # a closed window: each request answered (or refused) on its own
                for p in positions:
                    outcomes[p] = self._after_close_or_refusal(window_id, requests[p][1])
        if plans:
            read = None
            if judge_under_lock:
                read, ahead = locked_read(self.uow, planned, combined_by_window)
                chunks = self._judged_under_lock(plans, planned, combined_by_window, ahead)
            else:
                chunks = self._group_chunks(plans)
            self.recorder.insert_event_stream(chunks, lock_first=judge_under_lock, read=read)
            for plan in plans:
                self._put_in_cache(plan.window)
                answers = iter(plan.results)
                for p in plan.positions:
                    outcomes[p] = [next(answers) for _ in requests[p][1]]
        return [o if o is not None else [] for o in outcomes]

    def _judged_under_lock(
        self,
        plans: list[_Plan],
        windows: list[str],
        admissions: dict[str, Sequence[Admission]],
        ahead: Callable[[], ReadAhead],
    ) -> Iterator[Chunk]:
        """Made by the recorder once it holds the table lock: each window catches up and looks
        up its identities again (nothing can change them now) and is judged from that, with
        the bus's answers already given (the lock never waits on the bus), then written."""
        # What the recorder read in the lock's own round trip (ADR 0033).
        read_ahead = ahead()
        for i, window_id in enumerate(windows):
            plan = plans[i]
            try:
                again = self._plan(
                    window_id, admissions[window_id], plan.positions, read_ahead, plan
                )
            except LedgerError as refusal:
                if isinstance(refusal, ChainBroken):
                    self.uow.evict(window_id)
                raise GroupFailure(dict.fromkeys(plan.positions, refusal)) from refusal
            if again is None:  # closed by another process meanwhile: the next attempt says so
                raise StaleWindow(window_id)
            plans[i] = again
        yield from self._group_chunks(plans)

    def _plan(
        self,
        window_id: str,
        admissions: Sequence[Admission],
        positions: list[int],
        read_ahead: ReadAhead | None = None,
        asked: _Plan | None = None,
    ) -> _Plan | None:
        """Load the window and its identities' states and publish what needs the bus (before
        any transaction: the table lock never waits on the bus). None for a closed window.
        `asked`: a plan of the same requests made before the lock, whose bus answers are
        used instead of asking again (the identities to publish can only have become fewer)."""
        # Forms depend on the admissions alone: those made before the lock are kept.
        forms: Forms = {} if asked is None else asked.forms

        def make_forms() -> None:
            # What an admission's EventAdmitted will hash, whatever its verdict: made while
            # the database answers the lookup, so the write path only joins and hashes.
            for a in admissions:
                if a.canonical_payload is not None and a.identity not in forms:
                    try:  # noqa: SIM105 (suppress() costs an object and two calls an admission)
                        forms[a.identity] = (a, admitted_form(a))
                    except CanonicalizationError:  # admit() will say it
                        pass

        window, known = self.window_and_index(
            window_id, identities_of(admissions), make_forms, read_ahead
        )
        if window is not None and window.is_closed:
            return None
        # The index is read after the window, so it is never older; if it is newer (another
        # process committed in between), judging now would build on a stale window: re-run.
        pending = window.pending if window is not None else {}
        if any(k.state is IdentityState.UNKNOWN and i not in pending for i, k in known.items()):
            raise StaleWindow(window_id)
        wanted = to_publish(admissions, known)
        if asked is None or getattr(self.publisher, "offsets_from_window", False):
            outcomes = self._publish(window_id, window, wanted)  # in process, if under the lock
        elif all(identity in asked.outcomes for identity in wanted):
            outcomes = {identity: asked.outcomes[identity] for identity in wanted}
        else:
            raise StaleWindow(window_id)
        since = window.version if window is not None else 0
        return _Plan(
            window if window is not None else Window.open(window_id),
            since,
            admissions,
            known,
            outcomes,
            forms,
            positions,
        )

    def _after_close_or_refusal(
        self, window_id: str, admissions: Sequence[Admission]
    ) -> list[AdmissionResult] | BaseException:
        known = self.index.lookup_identities(window_id, (a.identity for a in admissions))
        try:
            return self.late.after_close(window_id, admissions, known)
        except LedgerError as refusal:
            return refusal

    def _group_chunks(self, plans: list[_Plan]) -> Iterator[Chunk]:
        """Every plan's chunks, a window after another, made as they are sent; a window whose
        judging is refused fails its own requests (GroupFailure), not the others'."""
        for plan in plans:
            try:
                yield from self._chunks(
                    plan.window,
                    plan.admissions,
                    plan.known,
                    plan.outcomes,
                    plan.forms,
                    plan.results,
                    plan.since,
                )
            except LedgerError as refusal:
                raise GroupFailure(dict.fromkeys(plan.positions, refusal)) from refusal

    def _put_in_cache(self, window: Window) -> None:
        # Whatever the cache's fast-forward setting: the next command on this window (under
        # its lock) starts from here and reads only the events it lacks.
        if self.repository.cache is not None:
            self.repository.cache.put(window.id, window)

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
        since: int,
    ) -> Iterator[Chunk]:
        """The batch's events and index changes, a chunk at a time, made as they are sent;
        then the window's snapshot, when this batch carried it across the interval."""
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
                yield Chunk(stored, list(changes.values()))
        snapshot = self.loader.due(window, since)
        if snapshot is not None:
            yield Chunk((), (), snapshot)
