"""One leader per database: the process that runs the projection follower and the scrub.

Several processes may serve one database (`ledger serve --workers N`, or several `ledger serve`
on different ports). Each one admits and reads; only the one that holds the leader lock follows
the log into the read models and scrubs closed windows. The others read the leader's tracking
rows when they wait for the read side (`ProjectionRunner.wait_for` polls them).

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`, scoped to the current
  database) taken on a connection of its own, held for as long as that session lives. A leader
  that dies loses it with its session.
- SQLite: `fcntl.flock` on a file beside the database (`<file>.leader`), held for as long as
  the file stays open. A leader that dies loses it with its file descriptors.

Every process that does not lead tries again every `retry_seconds`, so another takes over
within that bound when the leader stops. The leader checks as often that its session is still
there (PostgreSQL); when it is gone, it stops leading until it wins the lock again. Between the
loss and the check, two followers may run for a moment: harmless, each projection's position is
claimed with a compare-and-set (ADR 0006), so nothing is applied twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("ledger.leadership")

RETRY_SECONDS = 2.0
# The advisory lock's key: a fixed 64-bit number, the same in every process of every version.
LOCK_NAME = b"admission-ledger:projection-leader"
ADVISORY_KEY = int.from_bytes(hashlib.sha256(LOCK_NAME).digest()[:8], "big", signed=True)


class LeaderLock(Protocol):
    def try_acquire(self) -> bool:
        """True while this process holds the lock (taking it if it is free)."""

    def release(self) -> None: ...

    def describe(self) -> str: ...


class AdvisoryLock:
    """PostgreSQL: `pg_try_advisory_lock` on a dedicated autocommit connection."""

    def __init__(self, dsn: str, key: int = ADVISORY_KEY) -> None:
        self.dsn = dsn
        self.key = key
        self._conn: psycopg.Connection[Any] | None = None  # psycopg is imported when used
        self._held = False

    def describe(self) -> str:
        return f"PostgreSQL advisory lock {self.key}"

    def try_acquire(self) -> bool:
        import psycopg

        try:
            if self._conn is None:
                self._conn = psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=5, application_name="ledger-leader"
                )
            conn = self._conn
            if self._held:
                conn.execute("SELECT 1")  # the session (and so the lock) is still there
                return True
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            self._held = bool(row and row[0])
            return self._held
        except psycopg.Error:
            log.warning("leader lock: the database did not answer; retrying", exc_info=True)
            self._drop()
            return False

    def release(self) -> None:
        # Closing the session releases every session-level lock it holds.
        self._drop()

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class FileLock:
    """SQLite: an exclusive `flock` on a file beside the database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def describe(self) -> str:
        return f"file lock {self.path}"

    def try_acquire(self) -> bool:
        import fcntl

        if self._file is not None:
            return True  # an flock is held until the file is closed: it cannot be lost
        handle = open(self.path, "ab")  # noqa: SIM115 (kept open: it holds the lock)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        import fcntl

        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()


def lock_for(database_url: str, sqlite_path: Path | None) -> LeaderLock:
    """The leader lock of this database."""
    if sqlite_path is not None:
        return FileLock(sqlite_path.with_name(sqlite_path.name + ".leader"))
    return AdvisoryLock(database_url)


class Leadership:
    """Takes the lock if it can, at start and then every `retry_seconds`; calls `elected` when
    this process starts leading and `deposed` when it stops (its lock lost)."""

    def __init__(
        self,
        lock: LeaderLock,
        elected: Callable[[], None],
        deposed: Callable[[], None],
        *,
        retry_seconds: float = RETRY_SECONDS,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.lock = lock
        self.elected = elected
        self.deposed = deposed
        self.retry_seconds = retry_seconds
        self.say = say
        self.leading = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._turn = threading.Lock()  # one check at a time: the thread's, or start's

    def start(self) -> None:
        """One try now (so a lone process leads from its first moment), then in the background."""
        self.check()
        if not self.leading:
            self.say(
                f"ledger: process {os.getpid()} serves; another process leads the projection "
                f"follower and the scrub ({self.lock.describe()}); it takes over within "
                f"{self.retry_seconds:g} s if that one stops"
            )
        self._thread = threading.Thread(target=self._run, name="leadership", daemon=True)
        self._thread.start()

    def check(self) -> None:
        with self._turn:
            if self._stop.is_set():
                return
            held = self.lock.try_acquire()
            if held and not self.leading:
                self.leading = True
                self.say(
                    f"ledger: process {os.getpid()} leads: the projection follower and the scrub "
                    f"run here ({self.lock.describe()})"
                )
                self.elected()
            elif not held and self.leading:
                self.leading = False
                self.say(f"ledger: process {os.getpid()} lost the leader lock; it stops following")
                self.deposed()

    def _run(self) -> None:
        while not self._stop.wait(self.retry_seconds):
            try:
                self.check()
            except Exception:
                log.exception("leadership check failed; retrying in %.1f s", self.retry_seconds)

    def stop(self, before_release: Callable[[], None] = lambda: None) -> None:
        """Stop trying; run `before_release` (stop what leading started), then let go of the
        lock, so the next leader never overlaps with this one."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._turn:
            try:
                before_release()
            finally:
                self.leading = False
                self.lock.release()
