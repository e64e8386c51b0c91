"""Following the ledger's notification log into the read models, exactly once.

Each batch's view writes and each projection's new position commit in one transaction, and the
position is claimed with a compare-and-set: a crash between the two is impossible, and two
runners on the same database never apply an event twice (the loser rolls back and re-reads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Notification, Transcoder
from sqlalchemy import Connection, select, update

from projections.activity import ActivityProjection, PendingProjection
from projections.admitted import AdmittedProjection
from projections.base import Projection
from projections.decoding import EventDecoder
from projections.quarantine import QuarantineProjection
from projections.rebuild import rebuild
from projections.receipts import ReceiptsProjection
from projections.store import ReadStore
from projections.tables import tracking
from projections.upsert import insert_ignoring_conflicts

log = logging.getLogger(__name__)

# A step applies at most PAGE events of the log and about PAGE_BYTES of stored events: large
# pages spread a step's own cost (the claims, the positions, a statement a projection) over
# many events, and the bytes bound what a step holds whatever the payloads weigh (up to 1 MiB
# each). ADR 0037.
PAGE = 4000
PAGE_BYTES = 16 * 1024 * 1024
# How long the LISTEN thread waits between looks at the stop flag (it bounds stop()).
LISTEN_POLL_SECONDS = 0.1


# How long the background follower lets new events gather after a wake before applying them
# (unless a caller waits for the read side, `wait_for`): fewer, larger steps under load.
GATHER_SECONDS = 0.05


class PositionMoved(Exception):
    """Another runner applied these events first; re-read and carry on."""


def all_projections() -> list[Projection]:
    return [
        ReceiptsProjection(),
        AdmittedProjection(),
        QuarantineProjection(),
        ActivityProjection(),
        PendingProjection(),
    ]


class ProjectionRunner:
    def __init__(
        self,
        recorder: ApplicationRecorder,
        transcoder: Transcoder,
        store: ReadStore,
        projections: Sequence[Projection] | None = None,
        *,
        page: int = PAGE,
        poll_interval: float = 0.5,
        gather_seconds: float = GATHER_SECONDS,
    ) -> None:
        self.recorder = recorder
        self.transcoder = transcoder
        self.store = store
        self.projections = list(projections or all_projections())
        self.page = page
        self.page_bytes = PAGE_BYTES
        self._last_page_full = False
        self.poll_interval = poll_interval
        self.gather_seconds = gather_seconds
        self.decoder = EventDecoder()
        self._wake = threading.Event()
        self._urgent = threading.Event()  # someone waits for the read side: no gathering
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._advanced = threading.Condition()
        self._tracking_ready = False

    # --- positions ----------------------------------------------------------------------

    def positions(self, names: Sequence[str] | None = None) -> dict[str, int]:
        wanted = list(names or [p.name for p in self.projections])
        with self.store.reader.connect() as conn:
            rows = conn.execute(select(tracking).where(tracking.c.name.in_(wanted)))
            found = {row.name: row.position for row in rows}
        return {name: found.get(name, 0) for name in wanted}

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0

    def status(self) -> list[dict[str, Any]]:
        head = self.head()
        return [
            {"name": name, "position": position, "head": head, "lag": head - position}
            for name, position in self.positions().items()
        ]

    def ensure_tracking(self, names: Sequence[str]) -> None:
        """Tracking rows exist before anyone claims them, so a claim is always one
        compare-and-set UPDATE (two runners inserting the same row would collide instead)."""
        with self.store.writer.begin() as conn:
            conn.execute(
                insert_ignoring_conflicts(conn, tracking),
                [{"name": name, "position": 0} for name in names],
            )

    @staticmethod
    def claim(conn: Connection, name: str, old: int, new: int) -> None:
        moved = conn.execute(
            update(tracking)
            .where(tracking.c.name == name, tracking.c.position == old)
            .values(position=new)
        )
        if moved.rowcount != 1:
            raise PositionMoved(name)

    # --- reading the log ----------------------------------------------------------------

    def read(self, after: int, limit: int) -> list[Notification]:
        return list(self.recorder.select_notifications(after, limit, inclusive_of_start=False))

    def read_page(self, after: int) -> list[Notification]:
        """The next page of the log: at most `page` events and, where the recorder can tell
        (the ledger's can), as many of them as fit in `page_bytes` (always one at least)."""
        bounded = getattr(self.recorder, "select_notifications_within", None)
        if bounded is None:
            return self.read(after, self.page)
        return list(bounded(after, self.page, self.page_bytes))

    # --- applying -----------------------------------------------------------------------

    def step(self) -> int:
        """Apply the next page of the log to every projection behind it; return its size."""
        if not self._tracking_ready:
            self.ensure_tracking([p.name for p in self.projections])
            self._tracking_ready = True
        positions = self.positions()
        start = min(positions.values())
        notifications = self.read_page(start)
        # A page cut short by the bytes is full too: more may follow at once.
        self._last_page_full = len(notifications) >= self.page or (
            sum(len(n.state) for n in notifications) * 2 > self.page_bytes
        )
        if not notifications:
            return 0
        last = notifications[-1].id
        behind = [p for p in self.projections if positions[p.name] < last]
        try:
            with self.store.writer.begin() as conn:
                # Claim first: every writer takes the tracking rows before anything else, in
                # the same order, so runners and the rebuild's switch cannot deadlock.
                for projection in behind:
                    self.claim(conn, projection.name, positions[projection.name], last)
                events = self.decoder.decode(conn, notifications)
                for projection in behind:
                    mine = [e for e in events if e.position > positions[projection.name]]
                    projection.apply(conn, mine, {t.name: t for t in projection.tables()})
        except PositionMoved:
            # Another runner moved on, or a migration reset the row (it is made again first).
            self._tracking_ready = False
            self._last_page_full = False
            return 0
        with self._advanced:
            self._advanced.notify_all()
        return len(notifications)

    def run_until_caught_up(self, progress: Callable[[int], None] | None = None) -> int:
        applied = 0
        while True:
            n = self.step()
            applied += n
            if progress and n:
                progress(n)
            if n == 0 and min(self.positions().values()) >= self.head():
                return applied

    def wait_for(self, position: int, timeout: float = 10.0) -> bool:
        """Block until every projection has applied `position` (bounded)."""
        deadline = time.monotonic() + timeout
        while min(self.positions().values()) < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._urgent.set()
            self._wake.set()
            with self._advanced:
                self._advanced.wait(min(remaining, 0.05))
        return True

    # --- following in the background --------------------------------------------------

    def start(self) -> None:
        """Follow in the background (again, after a stop: a process that leads again)."""
        self._stop.clear()
        follow = threading.Thread(target=self._follow, name="projections", daemon=True)
        self._threads = [follow]
        if self.store.dialect == "postgresql":
            self._threads.append(
                threading.Thread(target=self._listen, name="projections-listen", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    def wake(self, urgent: bool = False) -> None:
        """Apply new events now (`urgent`: without letting more gather first)."""
        if urgent:
            self._urgent.set()
        self._wake.set()

    def _follow(self) -> None:
        backoff = self.poll_interval
        while not self._stop.is_set():
            try:
                self.step()
                if not self._last_page_full:
                    # Polling is the fallback: a NOTIFY (or a local wake) ends the wait early.
                    self._wake.wait(self.poll_interval)
                    self._wake.clear()
                    # Then let more commits gather, so each step (a transaction with a
                    # claim per projection) applies many events, unless a caller waits.
                    if not self._urgent.is_set():
                        self._urgent.wait(self.gather_seconds)
                    self._urgent.clear()
                backoff = self.poll_interval
            except Exception:
                log.exception("projection step failed; retrying in %.1fs", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _listen(self) -> None:
        import psycopg

        channel = getattr(self.recorder, "channel_name", None)
        url = self.store.writer.url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not self._stop.is_set() and channel:
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f'LISTEN "{channel}"')
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=LISTEN_POLL_SECONDS, stop_after=1):
                            self._wake.set()
            except Exception:
                log.warning("LISTEN connection lost; polling until it is back", exc_info=True)
                self._stop.wait(self.poll_interval)

    # --- blue/green rebuild -------------------------------------------------------------

    def rebuild(
        self, name: str | None = None, progress: Callable[[int], None] | None = None
    ) -> None:
        """Rebuild one or all read models beside the live tables (see `projections.rebuild`)."""
        rebuild(self, name, progress)
