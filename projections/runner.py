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
from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.persistence import ApplicationRecorder, Notification, Transcoder
from eventsourcing.utils import resolve_topic
from sqlalchemy import Connection, MetaData, Table, delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from ledger.domain import META_KEYS, format_recorded_at
from projections.admitted import AdmittedProjection
from projections.base import ProjectedEvent, Projection
from projections.quarantine import QuarantineProjection
from projections.receipts import ReceiptsProjection
from projections.store import ReadStore
from projections.tables import tracking, window_names

log = logging.getLogger(__name__)

PAGE = 1000
REBUILD_COMMIT_SECONDS = 0.25
NEXT = "__next"


def _insert_ignoring_conflicts(conn: Connection, table: Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


_decode_state = msgspec.json.Decoder().decode


def _recorded_at(stamp: str) -> str:
    """The contract's recorded_at from the stored timestamp text, parsing only when needed."""
    if len(stamp) == 27 and stamp[-1] == "Z":  # already YYYY-MM-DDTHH:MM:SS.ffffffZ
        return stamp
    return format_recorded_at(datetime.fromisoformat(stamp))


class PositionMoved(Exception):
    """Another runner applied these events first; re-read and carry on."""


def all_projections() -> list[Projection]:
    return [ReceiptsProjection(), AdmittedProjection(), QuarantineProjection()]


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
    ) -> None:
        self.recorder = recorder
        self.transcoder = transcoder
        self.store = store
        self.projections = list(projections or all_projections())
        self.page = page
        self.poll_interval = poll_interval
        self._names: dict[str, str] = {}  # window uuid -> window_id
        self._type_names: dict[str, str] = {}
        self._wake = threading.Event()
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

    def _ensure_tracking(self, names: Sequence[str]) -> None:
        """Tracking rows exist before anyone claims them, so a claim is always one
        compare-and-set UPDATE (two runners inserting the same row would collide instead)."""
        with self.store.writer.begin() as conn:
            conn.execute(
                _insert_ignoring_conflicts(conn, tracking),
                [{"name": name, "position": 0} for name in names],
            )

    @staticmethod
    def _claim(conn: Connection, name: str, old: int, new: int) -> None:
        moved = conn.execute(
            update(tracking)
            .where(tracking.c.name == name, tracking.c.position == old)
            .values(position=new)
        )
        if moved.rowcount != 1:
            raise PositionMoved(name)

    # --- reading the log ----------------------------------------------------------------

    def _read(self, after: int, limit: int) -> list[Notification]:
        return list(self.recorder.select_notifications(after, limit, inclusive_of_start=False))

    def _decode(self, conn: Connection, notifications: list[Notification]) -> list[ProjectedEvent]:
        keys = [str(n.originator_id) for n in notifications]
        # Plain JSON, not the transcoder: projections want the stored text of the timestamp.
        states = [_decode_state(n.state) for n in notifications]
        opened = []
        for n, key, state in zip(notifications, keys, states, strict=True):
            if n.originator_version == 1 and "window_id" in state:
                if key not in self._names:
                    opened.append({"window_uuid": key, "window_id": state["window_id"]})
                self._names[key] = state["window_id"]
        if opened:
            conn.execute(_insert_ignoring_conflicts(conn, window_names), opened)
        missing = set(keys) - self._names.keys()
        if missing:
            for row in conn.execute(
                select(window_names).where(window_names.c.window_uuid.in_(missing))
            ):
                self._names[row.window_uuid] = row.window_id
        events = []
        for n, key, state in zip(notifications, keys, states, strict=True):
            stamp = state.pop("timestamp")
            digest = state["digest"]
            for meta in META_KEYS.intersection(state):
                del state[meta]
            events.append(
                ProjectedEvent(
                    n.id,
                    self._names[key],
                    n.originator_version,
                    self._type_name(n.topic),
                    _recorded_at(stamp),
                    state,
                    digest,
                )
            )
        return events

    def _type_name(self, topic: str) -> str:
        name = self._type_names.get(topic)
        if name is None:
            name = self._type_names[topic] = resolve_topic(topic).__name__
        return name

    # --- applying -----------------------------------------------------------------------

    def step(self) -> int:
        """Apply the next page of the log to every projection behind it; return its size."""
        if not self._tracking_ready:
            self._ensure_tracking([p.name for p in self.projections])
            self._tracking_ready = True
        positions = self.positions()
        start = min(positions.values())
        notifications = self._read(start, self.page)
        if not notifications:
            return 0
        last = notifications[-1].id
        behind = [p for p in self.projections if positions[p.name] < last]
        try:
            with self.store.writer.begin() as conn:
                # Claim first: every writer takes the tracking rows before anything else, in
                # the same order, so runners and the rebuild's switch cannot deadlock.
                for projection in behind:
                    self._claim(conn, projection.name, positions[projection.name], last)
                events = self._decode(conn, notifications)
                for projection in behind:
                    mine = [e for e in events if e.position > positions[projection.name]]
                    projection.apply(conn, mine, {t.name: t for t in projection.tables()})
        except PositionMoved:
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
            self._wake.set()
            with self._advanced:
                self._advanced.wait(min(remaining, 0.05))
        return True

    # --- following in the background --------------------------------------------------

    def start(self) -> None:
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

    def wake(self) -> None:
        self._wake.set()

    def _follow(self) -> None:
        backoff = self.poll_interval
        while not self._stop.is_set():
            try:
                if self.step() < self.page:
                    # Polling is the fallback: a NOTIFY (or a local wake) ends the wait early.
                    self._wake.wait(self.poll_interval)
                    self._wake.clear()
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
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._wake.set()
            except Exception:
                log.warning("LISTEN connection lost; polling until it is back", exc_info=True)
                self._stop.wait(self.poll_interval)

    # --- blue/green rebuild -------------------------------------------------------------

    def rebuild(
        self, name: str | None = None, progress: Callable[[int], None] | None = None
    ) -> None:
        """Rebuild beside the live tables, then switch in one transaction; reads never stop.

        Several projections are rebuilt in one pass over the log (read and decoded once)."""
        targets = [p for p in self.projections if name is None or p.name == name]
        if not targets:
            raise ValueError(f"no projection named {name!r}")
        self._ensure_tracking([p.name for p in targets])
        shadows = {p.name: self._create_shadow(p) for p in targets}
        position = 0
        while True:
            # A rebuild restarts from nothing if it dies, so committing every page buys
            # nothing; commit every REBUILD_COMMIT_SECONDS so the ledger's writers get turns.
            with self.store.writer.begin() as conn:
                start, started = position, time.monotonic()
                while time.monotonic() - started < REBUILD_COMMIT_SECONDS:
                    notifications = self._read(position, self.page)
                    if not notifications:
                        break
                    events = self._decode(conn, notifications)
                    for projection in targets:
                        projection.apply(conn, events, shadows[projection.name])
                    position = events[-1].position
                    if progress:
                        progress(len(events))
                if position == start:
                    break
                for projection in targets:
                    self._claim(conn, projection.name + NEXT, start, position)
        for projection in targets:
            self._switch(projection, shadows[projection.name], position, progress)

    def _create_shadow(self, projection: Projection) -> dict[str, Table]:
        shadow_meta = MetaData()
        shadow = {
            t.name: t.to_metadata(shadow_meta, name=t.name + NEXT) for t in projection.tables()
        }
        for table in shadow.values():
            table.indexes.clear()  # bulk-load without secondary indexes; made at the switch
        next_name = projection.name + NEXT
        with self.store.writer.begin() as conn:
            shadow_meta.drop_all(conn)
            shadow_meta.create_all(conn)
            conn.execute(delete(tracking).where(tracking.c.name == next_name))
            conn.execute(insert(tracking).values(name=next_name, position=0))
        return shadow

    def _switch(
        self,
        projection: Projection,
        shadow: dict[str, Table],
        position: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        with self.store.writer.begin() as conn:
            # Lock the live row first (runners claim it first too): a follower's next claim
            # waits for the switch, then finds the position moved and re-reads.
            conn.execute(
                select(tracking.c.position)
                .where(tracking.c.name == projection.name)
                .with_for_update()
            )
            while notifications := self._read(position, self.page):
                events = self._decode(conn, notifications)
                projection.apply(conn, events, shadow)
                position = events[-1].position
                if progress:
                    progress(len(events))
            for table in projection.tables():
                conn.execute(text(f'DROP TABLE IF EXISTS "{table.name}"'))
                conn.execute(text(f'ALTER TABLE "{table.name}{NEXT}" RENAME TO "{table.name}"'))
                if conn.dialect.name == "postgresql":
                    conn.execute(
                        text(
                            f'ALTER TABLE "{table.name}" RENAME CONSTRAINT '
                            f'"{table.name}{NEXT}_pkey" TO "{table.name}_pkey"'
                        )
                    )
                for index in table.indexes:
                    index.create(conn)
            conn.execute(
                update(tracking).where(tracking.c.name == projection.name).values(position=position)
            )
            conn.execute(delete(tracking).where(tracking.c.name == projection.name + NEXT))
