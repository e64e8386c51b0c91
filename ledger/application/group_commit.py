"""Group commit (ADR 0019): admission requests that arrive together, for the same window or
for different ones, are written in one transaction.

Every write transaction takes the event store's table lock (one commit at a time, one fsync
each), so one request a transaction caps a service at its commits per second. Here a writer
thread gathers requests for up to `max_wait` seconds or `max_events` events, judges them in
arrival order (the requests of one window as one batch in that order: exactly the verdicts a
serial run gives), and records them all in one streamed transaction. Each request learns its
own results only after that transaction has committed.

A refusal of one request (a closed window, a broken history) fails that request only; a
version conflict (another process wrote one of the windows) re-runs the whole group from what
the cache and the snapshots hold; a storage failure fails every request of the group, none of
which was recorded (a retry is safe).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from ledger.admissions import Admission
from ledger.application.admitting import Admitting, GroupFailure
from ledger.application.results import AdmissionResult
from ledger.application.unit_of_work import WindowUnitOfWork
from ledger.errors import StorageUnavailable

log = logging.getLogger("ledger.group_commit")

DEFAULT_MAX_WAIT_SECONDS = 0.002
DEFAULT_MAX_EVENTS = 1000
# After a lost race, groups are judged under the table lock from the start for this long.
DEFAULT_CONTENDED_SECONDS = 1.0


@dataclass
class Request:
    window_id: str
    admissions: Sequence[Admission]
    future: Future[list[AdmissionResult]] = field(default_factory=Future)


class GroupCommitter:
    def __init__(
        self,
        admitting: Admitting,
        uow: WindowUnitOfWork,
        max_wait: float = DEFAULT_MAX_WAIT_SECONDS,
        max_events: int = DEFAULT_MAX_EVENTS,
        contended_seconds: float = DEFAULT_CONTENDED_SECONDS,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.admitting = admitting
        # Told once per committed group, once its requests have their results: the service
        # wakes the read side's follower here, once a group, not once a request (ADR 0044).
        self.on_commit = on_commit
        self.uow = uow
        self.max_wait = max_wait
        self.max_events = max_events
        self._queue: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.groups = 0  # transactions written (for the benchmarks)
        self.requests = 0
        self.contended_seconds = contended_seconds
        self._contended_until = 0.0
        self.judged_under_lock = 0  # groups judged under the table lock from the start

    def admit(
        self, window_id: str, admissions: Sequence[Admission], timeout: float | None = None
    ) -> list[AdmissionResult]:
        """Judge and record one request with whatever else arrives meanwhile; its results
        once the transaction holding it has committed. A request not yet taken by the writer
        after `timeout` is withdrawn (ADR 0027); one being written is waited for."""
        future = self.submit(window_id, admissions)
        try:
            return future.result(timeout)
        except FutureTimeout:
            if future.cancel():
                raise withdrawn(timeout) from None
            return future.result()

    def submit(
        self, window_id: str, admissions: Sequence[Admission]
    ) -> Future[list[AdmissionResult]]:
        """`admit` without waiting: the future is done once the transaction holding the request
        has committed (or failed). For callers that must not block a thread on it (the HTTP
        handler awaits it on the event loop)."""
        request = Request(window_id, admissions)
        self._ensure_started()
        self._queue.put(request)
        return request.future

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="ledger-group-commit", daemon=True
                    )
                    self._thread.start()

    # --- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, stopping = self._gather(first)
            self._write(group)
            # Let the written group go now, not when the next request comes: a large batch's
            # admissions (several times its body) would outlive its answer, unaccounted by the
            # in-flight body budget (ADR 0029).
            del first, group
            if stopping:
                return

    def _gather(self, first: Request) -> tuple[list[Request], bool]:
        group = [first]
        events = len(first.admissions)
        deadline = time.monotonic() + self.max_wait
        while events < self.max_events:
            remaining = deadline - time.monotonic()
            try:
                # What is already queued joins without waiting; then up to the deadline.
                nxt = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if nxt is None:
                return group, True
            group.append(nxt)
            events += len(nxt.admissions)
        return group, False

    def _write(self, group: list[Request]) -> None:
        # A request whose caller gave up (its future cancelled) is not written.
        group = [r for r in group if r.future.set_running_or_notify_cancel()]
        if not group:
            return
        try:
            outcomes = self._locked(group)
        except BaseException as exc:  # storage failure, contention: nothing was recorded
            for request in group:
                request.future.set_exception(exc)
            return
        self.groups += 1
        self.requests += len(group)
        for request, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)
        if self.on_commit is not None:
            try:
                self.on_commit()
            except Exception:  # a wake is an optimisation: the group has committed regardless
                log.exception("after a group commit: waking the read side failed")

    def _locked(self, group: list[Request]) -> list[list[AdmissionResult] | BaseException]:
        """Run the group under its windows' locks (taken in one order: no deadlock with the
        other commands), re-running it whole after a lost race; a request refused on its own
        is taken out and the rest re-run."""
        window_ids = list(dict.fromkeys(r.window_id for r in group))
        locks = sorted({id(lock): lock for lock in map(self.uow.lock, window_ids)}.items())
        for _, lock in locks:
            lock.acquire()
        try:
            refused: dict[int, BaseException] = {}
            while True:
                live = [i for i in range(len(group)) if i not in refused]
                requests = [(group[i].window_id, group[i].admissions) for i in live]

                def command(
                    requests: list[tuple[str, Sequence[Admission]]] = requests,
                ) -> list[list[AdmissionResult] | BaseException]:
                    return self.admitting.admit_group(requests)

                def under_lock(
                    requests: list[tuple[str, Sequence[Admission]]] = requests,
                    read_first: bool = True,
                ) -> list[list[AdmissionResult] | BaseException]:
                    return self.admitting.admit_group(requests, True, read_first)

                # Another process writes these windows too (a race was lost lately): judge
                # under the lock at once rather than lose the race again (ADR 0033).
                contended = time.monotonic() < self._contended_until
                self.judged_under_lock += contended
                reruns = self.uow.reruns
                try:
                    results = self.uow.run_group(
                        [w for w, _ in requests],
                        # The first attempt may skip the read before the lock (ADR 0033).
                        (lambda: under_lock(read_first=False)) if contended else command,
                        under_lock,
                    )
                except GroupFailure as failure:
                    for position, exc in failure.refusals.items():
                        refused[live[position]] = exc
                    continue
                finally:
                    if self.uow.reruns > reruns:
                        self._contended_until = time.monotonic() + self.contended_seconds
                merged: list[list[AdmissionResult] | BaseException] = []
                answers = iter(results)
                for i in range(len(group)):
                    merged.append(refused[i] if i in refused else next(answers))
                return merged
        finally:
            for _, lock in reversed(locks):
                lock.release()


def withdrawn(timeout: float | None) -> StorageUnavailable:
    """The answer to a request withdrawn from the queue at its deadline: nothing recorded."""
    return StorageUnavailable(
        f"the write queue did not reach this request within {timeout:g} s (the database is "
        "slow or down); it was withdrawn, nothing was recorded, retry"
    )
