"""Late arrivals (contract s.9): what reaches a closed window is answered from the identity
index; a changed payload is recorded beside the sealed window, in its `LateArrivals`, never in
it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.persistence import PersistenceError

from ledger.admissions import Admission
from ledger.application.judging import LateMismatch, judge_after_close, record_late
from ledger.application.results import AdmissionResult
from ledger.domain.late import LateArrivals, late_arrivals_uuid
from ledger.errors import ChainBroken
from ledger.verdicts import Known


class LateArrivalsRecorder:
    def __init__(self, repository: Repository[UUID], save: Callable[..., Any]) -> None:
        """`save`: the Application's (a `LateArrivals` is an aggregate of its own)."""
        self.repository = repository
        self.save = save

    def after_close(
        self, window_id: str, admissions: Sequence[Admission], known: dict[str, Known]
    ) -> list[AdmissionResult]:
        """Exact duplicates are answered and nothing is recorded; anything else refuses the
        whole batch (`WindowClosed`), after its late mismatches are recorded beside the sealed
        window, never in it (contract s.9)."""
        judged = judge_after_close(window_id, admissions, known)
        if judged.mismatches:
            self.record(window_id, judged.mismatches)
        if judged.refusal is not None:
            raise judged.refusal
        return judged.results

    def record(self, window_id: str, mismatches: Sequence[LateMismatch]) -> None:
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
