"""The ledger's application service: the commands admit, close and reconcile, and the write
side's reads (history, verify, receipt, gate).

Thin commands in the eventsourcing style: get the window, call its methods, save. The work of
each lives in its own module (admitting, reconciliation, history); running a command on one
window (lock, re-runs, cache) is the unit of work's. Infrastructure is chosen by the
composition root through the library's environment (recorder, transcoder and mapper topics).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder

from ledger.admissions import Admission
from ledger.application.admitting import Admitting
from ledger.application.bus_duplicates import (
    DEFAULT_REASON,
    BusDuplicateAcceptance,
    accept_step,
)
from ledger.application.group_commit import DEFAULT_MAX_EVENTS, GroupCommitter
from ledger.application.history import HISTORY_PAGE, HistoryReader
from ledger.application.loading import DEFAULT_SNAPSHOT_INTERVAL, WindowLoader
from ledger.application.reconciliation import (
    Progress,
    Reconciliation,
    adopt_step,
    republish_pending,
)
from ledger.application.results import AdmissionResult, Verification
from ledger.application.unit_of_work import TRANSIENT_BUDGET_SECONDS, WindowUnitOfWork
from ledger.domain import Window, window_uuid
from ledger.errors import BusLedgerMismatch
from ledger.gate import chain_broken, judge
from ledger.ports import (
    IdentityIndex,
    IndexChange,
    InspectableBus,
    Publisher,
    SnapshotStore,
    StreamingRecorder,
)
from ledger.receipts import receipt_json


class Ledger(Application[UUID]):
    name = "ledger"

    def __init__(self, env: dict[str, str], publisher: Publisher) -> None:
        super().__init__(env)
        if isinstance(self.mapper.transcoder, JSONTranscoder):
            # The library's default would re-encode client payloads its own way (ADR 0004).
            raise ValueError(
                "the ledger's environment names no TRANSCODER_TOPIC: build it through "
                "service.composition.build_ledger"
            )
        self.publisher = publisher
        self.index = cast(IdentityIndex, self.recorder)
        self.reader = HistoryReader(self.recorder, self.mapper.transcoder)
        self.loader = WindowLoader(
            self.recorder,
            cast(SnapshotStore, self.recorder),
            self.mapper,
            self.reader,
            interval=int(self.env.get("SNAPSHOT_INTERVAL") or DEFAULT_SNAPSHOT_INTERVAL),
        )
        self.uow = WindowUnitOfWork(
            self.repository,
            self.loader,
            float(self.env.get("STORAGE_RETRY_SECONDS") or TRANSIENT_BUDGET_SECONDS),
        )
        self._admitting = Admitting(
            self.uow,
            self.repository,
            self.mapper,
            cast(StreamingRecorder, self.recorder),
            self.index,
            publisher,
            self.save,
            self.loader,
        )
        self.committer = GroupCommitter(
            self._admitting,
            self.uow,
            max_wait=float(self.env.get("GROUP_COMMIT_MS") or 2.0) / 1000,
            max_events=int(self.env.get("GROUP_COMMIT_EVENTS") or DEFAULT_MAX_EVENTS),
        )

    # --- commands -----------------------------------------------------------------------

    def admit(self, window_id: str, admissions: Sequence[Admission]) -> list[AdmissionResult]:
        """Judge a whole batch in order and record it in one transaction (contract s.3)."""
        return self.uow.run(
            window_id,
            lambda: self._admitting.admit_once(window_id, admissions),
            lambda: self._admitting.admit_once(window_id, admissions, judge_under_lock=True),
        )

    def admit_with_others(
        self, window_id: str, admissions: Sequence[Admission], timeout: float | None = None
    ) -> list[AdmissionResult]:
        """`admit`, recorded in one transaction with the other requests that arrive meanwhile
        (group commit, ADR 0019): for a service with many concurrent callers. `timeout`: a
        request still queued after it is withdrawn (StorageUnavailable, nothing recorded)."""
        return self.committer.admit(window_id, admissions, timeout)

    def submit_with_others(
        self, window_id: str, admissions: Sequence[Admission]
    ) -> Future[list[AdmissionResult]]:
        """`admit_with_others` without waiting for the commit (`GroupCommitter.submit`)."""
        return self.committer.submit(window_id, admissions)

    def close(self) -> None:
        self.committer.close()
        super().close()

    def close_window(self, window_id: str) -> dict[str, Any]:
        """Close the window (refused while anything is UNKNOWN); closing again records nothing."""

        def command() -> dict[str, Any]:
            window = self.uow.window(window_id)
            if window.is_closed:
                return self.receipt(window_id)
            if window.pending:  # refuse before paying for the chain check
                window.close()
            if isinstance(self.publisher, InspectableBus):
                on_bus = self.publisher.count(window_id)
                # Extra messages an operator accepted (ADR 0028) are on the bus too.
                expected = window.admitted + window.bus_duplicates_accepted
                if on_bus != expected:
                    raise BusLedgerMismatch(window_id, on_bus, expected)
            check = self.verify(window_id)
            intact = check.ok and check.head == window.chain_head
            since = window.version
            window.close(chain_verified=intact, first_bad_version=check.first_bad_version)
            self.save(window, snapshot=self.loader.due(window, since))
            # The chain was just verified: no second pass over the history for the gate.
            problems = [] if intact else [chain_broken(check.first_bad_version)]
            return self._receipt(
                window, judge(closed=True, pending_unknown=0, problems=problems)[0]
            )

        return self.uow.run(window_id, command)

    def reconcile(self, window_id: str, progress: Progress | None = None) -> dict[str, Any]:
        """Resolve the window against the bus (see `ledger.application.reconciliation`), in
        bounded steps, each its own command and transaction; `progress` hears after each."""
        done = Reconciliation()
        tried: set[str] = set()

        def republish() -> Reconciliation | None:
            window = self.uow.window(window_id)
            if window.is_closed:
                return None
            changes: list[IndexChange] = []
            since = window.version
            step = republish_pending(window, self.publisher, self.reader, changes, tried)
            if changes:
                self.save(window, index_changes=changes, snapshot=self.loader.due(window, since))
            return step if step.reconciled or step.still_unknown else None

        def adopt() -> Reconciliation | None:
            window = self.uow.window(window_id)
            if window.is_closed:
                return None
            changes: list[IndexChange] = []
            since = window.version
            step = adopt_step(window, self.publisher, self.index, done, changes)
            if changes:
                self.save(window, index_changes=changes, snapshot=self.loader.due(window, since))
            return step

        for command in (republish, adopt):
            while (step := self.uow.run(window_id, command)) is not None:
                done.add(step)
                tried.update(step.reconciled, step.still_unknown)
                if progress is not None:
                    progress(done)
        return done.as_json()

    def accept_bus_duplicates(
        self, window_id: str, *, accepted_by: str, reason: str = DEFAULT_REASON
    ) -> dict[str, Any]:
        """Record an operator's acceptance of the extra bus messages of identities the window
        admitted elsewhere, with the admitted payload (see `ledger.application.bus_duplicates`),
        in bounded steps; accepting again records nothing new. Refused on a closed window."""
        run = BusDuplicateAcceptance(window_id, accepted_by, reason or DEFAULT_REASON)

        def command() -> Any:
            window = self.uow.window(window_id)
            since = window.version
            step = accept_step(window, self.publisher, self.index, self.reader, run)
            if step is not None and step.accepted:
                self.save(window, snapshot=self.loader.due(window, since))
            return step

        while (step := self.uow.run(window_id, command)) is not None:
            run.add(step)
        return run.as_json()

    # --- reads of the write side --------------------------------------------------------

    def has_window(self, window_id: str) -> bool:
        """Whether the window exists (one indexed read; the cache is not touched)."""
        return bool(self.recorder.select_events(window_uuid(window_id), limit=1))

    def get_window(self, window_id: str) -> Window:
        """A copy of the window for readers (see `WindowUnitOfWork.snapshot`)."""
        return self.uow.snapshot(window_id)

    def history(
        self, window_id: str, *, after: int = 0, limit: int = HISTORY_PAGE
    ) -> list[dict[str, Any]]:
        return self.reader.history(window_id, after=after, limit=limit)

    def iter_history(self, window_id: str) -> Iterator[dict[str, Any]]:
        return self.reader.iter_history(window_id)

    def verify(self, window_id: str) -> Verification:
        return self.reader.verify(window_id)

    def receipt(self, window_id: str) -> dict[str, Any]:
        window = self.get_window(window_id)
        return self._receipt(window, self.gate(window_id, window)["status"])

    @staticmethod
    def _receipt(window: Window, gate: str) -> dict[str, Any]:
        return receipt_json(
            window_id=window.window_id,
            status=window.status,
            gate=gate,
            counts=window.counts(),
            bus_offsets=window.bus_offset_range(),
            source_offsets=window.source_offset_ranges(),
            opened_at=window.opened_at,
            closed_at=window.closed_at,
            events=window.version,
            chain_head=window.chain_head,
        )

    def gate(self, window_id: str, window: Window | None = None) -> dict[str, Any]:
        """The gate as the write side sees it: the chain is recomputed for a closed window."""
        window = window or self.get_window(window_id)
        problems: list[str] = []
        if window.is_closed:
            verification = self.verify(window_id)
            if not verification.ok:
                problems.append(chain_broken(verification.first_bad_version))
        status, reasons = judge(
            closed=window.is_closed, pending_unknown=len(window.pending), problems=problems
        )
        return {"window_id": window_id, "status": status, "reasons": reasons}


__all__ = ["Ledger"]
