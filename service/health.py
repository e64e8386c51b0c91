"""The service's health by part: the storage (the database of LEDGER_DATABASE_URL) and the bus
(the publisher), each checked on a thread of its own and waited for at most `WAIT_SECONDS`, so
`GET /health` answers in bounded time whatever the database or the bus is doing (ADR 0024).

Neither check goes through the connection pools the writers use or touches the event store's
tables: writers queued on the table lock (`LOCK TABLE ledger_events IN EXCLUSIVE MODE`), holding
every pooled connection while they wait, cannot hold the answer up. A check that does not answer
in time counts as down; it is not started again while it still runs, so a hung database or bus
never gathers threads. Nothing here names a host, a path or a URL: a part is described by its
kind and, when down, by the kind of failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_for
from pathlib import Path
from typing import Any

WAIT_SECONDS = 0.8
OK, DEGRADED, UNAVAILABLE = "ok", "degraded", "unavailable"


class Check:
    """One part's check, run on a daemon thread; at most one run at a time."""

    def __init__(self, name: str, run: Callable[[], None]) -> None:
        self.name = name
        self._run = run
        self._lock = threading.Lock()
        self._running: tuple[float, Future[None]] | None = None

    def start(self) -> tuple[float, Future[None]]:
        """The run in progress (when it started, its outcome), or a new one."""
        with self._lock:
            if self._running is not None and not self._running[1].done():
                return self._running
            future: Future[None] = Future()

            def run() -> None:
                try:
                    self._run()
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(None)

            self._running = (time.monotonic(), future)
            threading.Thread(target=run, name=f"health-{self.name}", daemon=True).start()
            return self._running


def _outcome(started: float, future: Future[None], wait: float) -> str | None:
    """None when the check answered in time, else what went wrong (a kind, never a message:
    drivers put hosts and URLs in theirs)."""
    # A run started by an earlier caller has had part of its time already.
    remaining = started + wait - time.monotonic()
    wait_for([future], timeout=max(remaining, 0.0))
    if not future.done():
        return f"no answer within {wait:g} s"
    failure = future.exception()
    return None if failure is None else type(failure).__name__


def _part(kind: str, problem: str | None) -> dict[str, Any]:
    part: dict[str, Any] = {"ok": problem is None, "kind": kind}
    if problem is not None:
        part["detail"] = problem
    return part


class HealthProbe:
    """`report()`: the overall status and each part. Storage down is `unavailable` (the
    service can neither admit nor serve); the bus down with the storage up is `degraded` (reads
    and the evidence are served, admissions are refused or recorded as unknown). The embedded
    publisher's bus is the storage itself: it is up exactly when the storage is."""

    def __init__(
        self,
        storage_kind: str,
        storage: Callable[[], None],
        bus_kind: str,
        bus: Callable[[float], None] | None,
        *,
        wait_seconds: float = WAIT_SECONDS,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self.storage_kind = storage_kind
        self.bus_kind = bus_kind
        self.wait_seconds = wait_seconds
        self._storage = Check("storage", storage)
        self._bus = None if bus is None else Check("bus", lambda: bus(wait_seconds))
        self._close = close

    def report(self) -> dict[str, Any]:
        storage = self._storage.start()
        bus = self._bus.start() if self._bus is not None else None
        storage_problem = _outcome(*storage, self.wait_seconds)
        if bus is None:
            bus_problem = storage_problem and f"the embedded bus is the storage: {storage_problem}"
        else:
            bus_problem = _outcome(*bus, self.wait_seconds)
        if storage_problem is not None:
            status = UNAVAILABLE
        else:
            status = OK if bus_problem is None else DEGRADED
        return {
            "status": status,
            "storage": _part(self.storage_kind, storage_problem),
            "bus": _part(self.bus_kind, bus_problem),
        }

    def close(self) -> None:
        self._close()


class PostgresPing:
    """`SELECT 1` on a connection of its own, outside the pools, with short timeouts on the
    server side too; a connection that broke is replaced once within the same check."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: Any = None  # a psycopg.Connection; psycopg is imported when used

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            self.database_url,
            autocommit=True,
            connect_timeout=2,
            application_name="ledger-health",
            options="-c statement_timeout=500 -c lock_timeout=200",
        )

    def __call__(self) -> None:
        reused = self._conn is not None
        if self._conn is None:
            self._conn = self._connect()
        try:
            self._conn.execute("SELECT 1").fetchone()
        except Exception:
            self.close()
            if not reused:
                raise
            self._conn = self._connect()  # the server may have restarted since the last check
            self._conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def sqlite_ping(path: Path) -> Callable[[], None]:
    """A fresh connection to the file each time (never creating it): the schema is read, which
    in WAL mode waits for no writer."""
    uri = f"{path.resolve().as_uri()}?mode=rw"

    def ping() -> None:
        import sqlite3

        conn = sqlite3.connect(uri, uri=True, timeout=0.5, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()

    return ping
