"""Running one command on one window: the window's lock, re-runs on conflicts, the cache; and
loading a window, where a stored history that does not replay is reported as `ChainBroken`.

eventsourcing is sync: callers in an event loop run commands in a thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any, Protocol, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError

from ledger.application.storage import as_storage_failure
from ledger.domain import Window, window_uuid
from ledger.domain.snapshot import copy_window
from ledger.errors import ChainBroken, Contention, LedgerError, WindowNotFound

MAX_ATTEMPTS = 20
TRANSIENT_ATTEMPTS = 10  # as eventsourcing's own insert retries
TRANSIENT_WAIT_SECONDS = 0.2
TRANSIENT_BUDGET_SECONDS = 5.0  # how long transient errors are retried before a 503
_LOCK_STRIPES = 64

T = TypeVar("T")


class StaleWindow(Exception):
    """Another process moved the window on between our reads: re-run the command."""


def history_breaks(window_id: str, version: int, why: str) -> ChainBroken:
    return ChainBroken(
        f"the stored history of window {window_id!r} breaks at version {version}: {why}; "
        "nothing was recorded, and retrying will not help (its verify shows the chain)",
        window_id=window_id,
        version=version,
    )


def replay(window_id: str, window: Window | None, events: Iterable[Any]) -> Window | None:
    """The library's `project_aggregate`, for a history that may have been tampered with: the
    events must follow `window` one version at a time, decode and apply, or the history is
    reported broken at the first version that does not (a hole, an undecodable or unappliable
    event), instead of the library's OriginatorVersionError or a decoding error."""
    version = window.version if window is not None else 0
    stream = iter(events)  # the mapper decodes as this is read
    while True:
        expected = version + 1
        try:
            event = next(stream)
        except StopIteration:
            return window
        except Exception as exc:
            why = f"its stored event does not decode ({exc})"
            raise history_breaks(window_id, expected, why) from exc
        found = getattr(event, "originator_version", None)
        if found != expected:
            why = (
                f"it is missing (the next stored event is version {found})"
                if isinstance(found, int) and found > expected
                else f"the stored event there is version {found}, after version {version}"
            )
            raise history_breaks(window_id, expected, why)
        try:
            window = cast("Window", event.mutate(window))
        except Exception as exc:
            why = f"its stored event does not apply ({exc})"
            raise history_breaks(window_id, expected, why) from exc
        version = expected


class Loader(Protocol):
    def load(self, window_id: str) -> Window | None: ...


class WindowUnitOfWork:
    def __init__(
        self,
        repository: Repository[UUID],
        loader: Loader,
        retry_seconds: float = TRANSIENT_BUDGET_SECONDS,
    ) -> None:
        self.repository = repository
        self.retry_seconds = retry_seconds
        # A window not in the cache: its snapshot and the events after it (ADR 0017).
        self.loader = loader
        self.reruns = 0  # commands re-run after a version conflict (for the benchmarks)
        # One writer per window in this process; other processes are caught by version
        # conflicts. Striped, so memory stays bounded however many windows there are.
        self._locks = [threading.RLock() for _ in range(_LOCK_STRIPES)]

    def lock(self, window_id: str) -> threading.RLock:
        return self._locks[hash(window_id) % _LOCK_STRIPES]

    def find(self, window_id: str) -> Window | None:
        """The window: from the cache, brought up to date (the events it lacks), or loaded
        from its snapshot and the events after it, then cached."""
        if self.repository.cache is not None and self.cached(window_id) is None:
            try:
                loaded = self.loader.load(window_id)
            except ChainBroken:
                self.evict(window_id)
                raise
            if loaded is not None:
                self.repository.cache.put(loaded.id, loaded)
            return loaded
        try:
            window: Window = self.repository.get(
                window_uuid(window_id),
                projector_func=lambda w, events: replay(window_id, w, events),
            )
        except AggregateNotFoundError:
            return None
        except ChainBroken:
            # The fast-forward of a cached window may have applied part of what it read.
            self.evict(window_id)
            raise
        return window

    def window(self, window_id: str) -> Window:
        """The cached window itself: only for commands, which hold the window's lock."""
        window = self.find(window_id)
        if window is None:
            raise WindowNotFound(f"no window {window_id!r}")
        return window

    def cached(self, window_id: str) -> Window | None:
        """The cached window, if the cache holds it (nothing is read from storage)."""
        if self.repository.cache is None:
            return None
        with contextlib.suppress(KeyError):
            return cast("Window", self.repository.cache.get(window_uuid(window_id)))
        return None

    def snapshot(self, window_id: str) -> Window:
        """A copy for readers. The cache hands out the live object (no deep copy), and a read
        that fast-forwarded it in the middle of another thread's command would let that command
        append on top of a version it never judged against: so take the lock, copy."""
        with self.lock(window_id):
            return deepcopy(self.window(window_id))

    def evict(self, window_id: str, *, only_if_dirty: bool = False) -> None:
        # The cache hands out the object itself (no deep copy): a failed command must not
        # leave its rejected events in it. A refusal that changed nothing keeps the cached
        # window (reloading it costs a replay of the whole history).
        cached = self.cached(window_id)
        if cached is None or (only_if_dirty and not cached.pending_events):
            return
        assert self.repository.cache is not None
        with contextlib.suppress(KeyError):
            self.repository.cache.get(window_uuid(window_id), evict=True)

    def run(
        self,
        window_id: str,
        command: Callable[[], T],
        after_lost_race: Callable[[], T] | None = None,
    ) -> T:
        """Run a command under the window's lock; re-run it whole on a version conflict."""
        with self.lock(window_id):
            return self.run_group([window_id], command, after_lost_race)

    def run_group(
        self,
        window_ids: list[str],
        command: Callable[[], T],
        after_lost_race: Callable[[], T] | None = None,
    ) -> T:
        """Run a command on these windows (the caller holds their locks); re-run it whole on
        a version conflict, each cached window put back as it was before the attempt and
        brought up to date by the events it lacks (a window that was not cached is loaded from
        its snapshot and the events after it). `after_lost_race`: the command for the re-runs
        (an admission judged under the table lock, which cannot lose again: ADR 0022)."""
        # A group names a window once a request: keep (and put back) each one once, not a copy
        # of its state (pending identities included) for every request that names it.
        window_ids = list(dict.fromkeys(window_ids))

        def evict_all(only_if_dirty: bool = False) -> None:
            for window_id in window_ids:
                self.evict(window_id, only_if_dirty=only_if_dirty)

        transient = 0
        retry_until = time.monotonic() + self.retry_seconds
        for _ in range(MAX_ATTEMPTS):
            before = self._keep(window_ids)
            try:
                return command()
            except (IntegrityError, StaleWindow):
                # Lost a race: the windows go back to what they were before this attempt, so
                # the next one reads only the events another process wrote meanwhile.
                evict_all()
                self._put_back(before)
                self.reruns += 1
                command = after_lost_race or command
            except (OperationalError, InterfaceError) as exc:
                # A dropped connection or a lock timeout: retried as the library retries
                # its own inserts (the streamed save is not wrapped by its decorator).
                # Bounded in attempts and in time: the request has a deadline (ADR 0027).
                evict_all()
                transient += 1
                if transient >= TRANSIENT_ATTEMPTS or time.monotonic() > retry_until:
                    failure = as_storage_failure(exc)
                    if failure is None:
                        raise
                    raise failure from exc
                time.sleep(TRANSIENT_WAIT_SECONDS)
            except ChainBroken:
                # Loading the window found its stored history broken: re-running would
                # find it again. The cached window may hold part of a catch-up: drop it.
                evict_all()
                raise
            except LedgerError:
                # A refusal comes before any save; keep the window unless it was changed.
                evict_all(only_if_dirty=True)
                raise
            except BaseException:
                # Anything else may come from inside save, which has already taken the
                # pending events: the object can be ahead of storage without showing it.
                evict_all()
                raise
        raise Contention(
            f"windows {', '.join(map(repr, window_ids))} kept changing under this command; "
            "nothing was recorded"
        )

    def _keep(self, window_ids: list[str]) -> list[Window]:
        """Copies of the cached windows as they are before a command changes them."""
        return [copy_window(w) for w in map(self.cached, window_ids) if w is not None]

    def _put_back(self, windows: list[Window]) -> None:
        if self.repository.cache is not None:
            for window in windows:
                self.repository.cache.put(window.id, window)


__all__ = ["StaleWindow", "WindowUnitOfWork", "history_breaks", "replay"]
