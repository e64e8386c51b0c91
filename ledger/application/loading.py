"""Loading a window that is not in the cache: its latest snapshot, held to the stored event at
its version, then the events after it, a page at a time (ADR 0017). A window's whole history is
never in memory; with snapshots every `interval` events, a load reads at most that many.

A snapshot that does not decode or whose chain head is not the digest of the stored event at
its version is discarded (and removed): the window is then replayed from its first event, a
page at a time, exactly as without snapshots.
"""

from __future__ import annotations

import json
import logging
from uuid import UUID

import msgspec
from eventsourcing.persistence import ApplicationRecorder, Mapper

from ledger.application.history import HistoryReader
from ledger.application.unit_of_work import replay
from ledger.domain import Window, window_uuid
from ledger.domain.snapshot import snapshot_state, window_from_snapshot
from ledger.ports import SnapshotStore, WindowSnapshot

LOAD_PAGE = 1000  # events decoded at a time when replaying
DEFAULT_SNAPSHOT_INTERVAL = 500
# Pending identities a snapshot may hold for each event of its interval before the interval
# stretches (about 75 bytes each: a snapshot then costs at most ~300 bytes an event).
PENDING_PER_EVENT = 4

log = logging.getLogger(__name__)

# A snapshot holds every pending identity (a whole outage's): written in the order the window
# holds them, not sorted, and by msgspec, it costs about a fortieth of the standard library's
# sorted text (1 against 44 ms for 20,000 of them), paid every `interval` events.
_encode_snapshot = msgspec.json.Encoder().encode


class WindowLoader:
    def __init__(
        self,
        recorder: ApplicationRecorder,
        snapshots: SnapshotStore,
        mapper: Mapper[UUID],
        reader: HistoryReader,
        interval: int = DEFAULT_SNAPSHOT_INTERVAL,
    ) -> None:
        self.recorder = recorder
        self.snapshots = snapshots
        self.mapper = mapper
        self.reader = reader
        self.interval = interval
        self.events_read = 0  # for the benchmarks: how many stored events loads have read

    def load(self, window_id: str) -> Window | None:
        """The window at its latest stored version, or None when it has no events."""
        uuid = window_uuid(window_id)
        window = self.from_snapshot(window_id, uuid)
        return self.catch_up(window_id, uuid, window)

    def catch_up(self, window_id: str, uuid: UUID, window: Window | None) -> Window | None:
        """`window` (None: nothing yet) brought up to the latest stored version, a page of
        events at a time."""
        after = window.version if window is not None else 0
        while True:
            page = self.recorder.select_events(uuid, gt=after, limit=LOAD_PAGE)
            self.events_read += len(page)
            window = replay(window_id, window, (self.mapper.to_domain_event(s) for s in page))
            if len(page) < LOAD_PAGE:
                return window
            after = page[-1].originator_version

    def from_snapshot(self, window_id: str, uuid: UUID) -> Window | None:
        snapshot = self.snapshots.latest_snapshot(uuid)
        if snapshot is None:
            return None
        problem = self._problem(window_id, uuid, snapshot)
        if problem is None:
            return window_from_snapshot(json.loads(snapshot.state))
        log.warning(
            "window %r: the snapshot at version %d is discarded (%s); replaying its history",
            window_id,
            snapshot.version,
            problem,
        )
        self.snapshots.discard_snapshot(uuid, snapshot.version)
        return None

    def _problem(self, window_id: str, uuid: UUID, snapshot: WindowSnapshot) -> str | None:
        """Why the snapshot cannot be trusted, or None."""
        try:
            state = json.loads(snapshot.state)
            window = window_from_snapshot(state)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"it does not decode: {exc!r}"
        if window.id != uuid or window.window_id != window_id:
            return "it is another window's"
        if window.version != snapshot.version:
            return f"it says version {window.version}, its row {snapshot.version}"
        stored = self.recorder.select_events(
            uuid, gt=snapshot.version - 1, lte=snapshot.version, limit=1
        )
        self.events_read += len(stored)
        if not stored:
            return f"the history has no event at version {snapshot.version}"
        try:
            digest = self.reader.state(stored[0])["digest"]
        except Exception as exc:
            return f"the stored event at its version does not decode: {exc!r}"
        if digest != window.chain_head:
            return "its chain head is not the digest of the stored event at its version"
        return None

    def due(self, window: Window, since_version: int) -> WindowSnapshot | None:
        """The window's snapshot when this command carried it across a multiple of its
        interval (None otherwise): written in the command's own transaction."""
        interval = self.interval_for(window)
        if interval <= 0 or window.version // interval <= since_version // interval:
            return None
        return self.take(window)

    def interval_for(self, window: Window) -> int:
        """The interval, stretched by a multiple for every PENDING_PER_EVENT x interval
        identities pending in the window (ADR 0045): a snapshot holds them all, so what
        snapshots write stays a bounded number of bytes an event however long an outage
        was, and a load still reads one snapshot and at most that many events."""
        if self.interval <= 0:
            return self.interval
        return self.interval * (1 + len(window.pending) // (PENDING_PER_EVENT * self.interval))

    @staticmethod
    def take(window: Window) -> WindowSnapshot:
        return WindowSnapshot(window.id, window.version, _encode_snapshot(snapshot_state(window)))
