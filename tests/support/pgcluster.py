"""A PostgreSQL cluster of the test's own, so a fault test can stop, pause, kill and restart a
database without touching the shared server on 127.0.0.1:5432 (never stopped by a test).

`PostgresCluster(workdir)` runs `initdb` and then `postgres` directly (no pg_ctl), listening on
a free loopback port only, with trust auth for the `postgres` role. PostgreSQL refuses to run as
root, so when the tests run as root both run as the `postgres` system user (or the user named
by LEDGER_TEST_POSTGRES_USER); otherwise as the current user. The binaries are found through
LEDGER_TEST_POSTGRES_BIN (a bin directory), /usr/lib/postgresql/<newest>/bin, or PATH.

Where things live: pytest's tmp_path is private to root (mode 0700 all the way up), so the
`postgres` user cannot reach it. The data directory and the unix socket therefore live in a
private directory of their own under the system temp dir (owned by that user; `workdir/pgdata`
links to it), which close() removes; the logs (`initdb.log`, `postgres.log`) are written into
`workdir` through file descriptors opened here, and are left to tmp_path's cleanup.

`pause()` SIGSTOPs the postmaster and every backend (each is a session leader of its own, so
there is no process group to signal): new connections hang instead of being refused, running
queries do not answer. `kill()` SIGKILLs them all (crash recovery on the next start);
`stop()` is a clean pg_ctl-style shutdown ("fast" by default). The `own_postgres` fixture
yields a started cluster and closes it at teardown whatever the test did; when the binaries or
a usable user are missing it skips loudly, or fails under CI=true (`missing_service`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

import psycopg
import pytest
from psycopg import sql

from tests.support.services import HOST, free_port, missing_service

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0
SIGNAL_TIMEOUT_SECONDS = 5.0
SUPERUSER = "postgres"

StopMode = Literal["smart", "fast", "immediate"]
_STOP_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}

# postgresql.conf additions: loopback TCP only, quick and small, crash-safe commits kept
# (fsync=off only loses data on an OS crash; a SIGKILL keeps everything written at COMMIT).
_SETTINGS = """
# --- tests/support/pgcluster.py
listen_addresses = '{host}'
port = {port}
unix_socket_directories = '{socket_dir}'
fsync = off
full_page_writes = off
synchronous_commit = on
shared_buffers = 16MB
huge_pages = off
dynamic_shared_memory_type = mmap
max_connections = 100
log_min_messages = warning
log_line_prefix = '%m [%p] '
"""


# --- finding what a cluster needs ------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def postgres_bindir() -> Path | None:
    """The directory holding both `initdb` and `postgres`, or None."""
    candidates: list[Path] = []
    if override := os.environ.get("LEDGER_TEST_POSTGRES_BIN"):
        candidates.append(Path(override))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    if found := shutil.which("initdb"):
        candidates.append(Path(found).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres")):
            return bindir
    return None


def cluster_user() -> pwd.struct_passwd | None:
    """The non-root user initdb and postgres run as: ourselves unless we are root, else the
    `postgres` system user (LEDGER_TEST_POSTGRES_USER overrides); None when there is none."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    name = os.environ.get("LEDGER_TEST_POSTGRES_USER", "postgres")
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        return None
    return user if user.pw_uid != 0 else None


def cluster_unavailable() -> str | None:
    """None when a cluster of the test's own can be made here, else why not."""
    if postgres_bindir() is None:
        return (
            "no PostgreSQL server binaries (initdb, postgres) under /usr/lib/postgresql/*/bin, "
            "LEDGER_TEST_POSTGRES_BIN or PATH: a cluster of the test's own cannot be made"
        )
    if cluster_user() is None:
        return (
            "running as root and there is no non-root 'postgres' user "
            "(or LEDGER_TEST_POSTGRES_USER) for initdb/postgres to run as"
        )
    return None


def _process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a live process, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) S ppid ...": comm may hold spaces and parens, so split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _children_of(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            state = _process_state(int(entry.name))
            if state is not None and state[1] == parent:
                children.append(int(entry.name))
    return children


def _wait_for(
    predicate: Callable[[], bool], what: str, timeout: float = SIGNAL_TIMEOUT_SECONDS
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up after {timeout:g}s waiting for: {what}")
        time.sleep(0.005)


def _wait_dead(pids: list[int]) -> None:
    """Wait for each killed backend to be gone or a zombie (memory released, shared memory
    detached); orphaned by the postmaster's death, they are init's to reap."""

    def all_dead() -> bool:
        states = [_process_state(pid) for pid in pids]
        return all(state is None or state[0] in "ZX" for state in states)

    _wait_for(all_dead, f"the killed backends {pids} to die")


# --- the cluster -----------------------------------------------------------------------------


class PostgresCluster:
    """One PostgreSQL cluster (initdb'd at construction), restartable on the same port and data."""

    def __init__(self, workdir: Path, bindir: Path | None = None) -> None:
        found = bindir or postgres_bindir()
        user = cluster_user()
        if found is None or user is None:
            raise FileNotFoundError(cluster_unavailable() or "no PostgreSQL cluster possible")
        self.bindir = found
        self.user = user
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.paused_pids: list[int] = []
        self.starts = 0
        self.init_seconds = 0.0
        self.last_start_seconds = 0.0
        # The data dir and socket dir must be reachable by `user`; tmp_path is not (0700 root).
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="ledger-pgcluster-"))
        try:
            os.chown(self.runtime_dir, user.pw_uid, user.pw_gid)
            self.data_dir = self.runtime_dir / "data"
            with contextlib.suppress(OSError):
                (workdir / "pgdata").symlink_to(self.data_dir)
            self._initdb()
        except BaseException:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            raise

    def _run_as_user(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", HOME=str(self.runtime_dir))
        switch = os.geteuid() == 0
        with log.open("ab") as out:
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.runtime_dir,
                env=env,
                user=self.user.pw_uid if switch else None,
                group=self.user.pw_gid if switch else None,
                extra_groups=[] if switch else None,
                start_new_session=True,  # no terminal Ctrl-C reaches it
            )

    def _initdb(self) -> None:
        began = time.monotonic()
        initdb = self._run_as_user(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            self.workdir / "initdb.log",
        )
        try:
            code = initdb.wait(timeout=START_TIMEOUT_SECONDS * 2)
        finally:
            if initdb.poll() is None:
                initdb.kill()
                initdb.wait()
        if code != 0:
            log = (self.workdir / "initdb.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"initdb exited with {code}:\n{log}")
        settings = _SETTINGS.format(host=HOST, port=self.port, socket_dir=self.runtime_dir)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(settings)
        self.init_seconds = time.monotonic() - began

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> PostgresCluster:
        """Start the postmaster and return once it accepts connections (after any crash
        recovery)."""
        if self.running:
            raise RuntimeError("the cluster is already running")
        began = time.monotonic()
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts} on port {self.port}\n".encode())
        self.process = self._run_as_user(
            [str(self.bindir / "postgres"), "-D", str(self.data_dir)], self.log_path
        )
        self._wait_until_accepting(began)
        self.last_start_seconds = time.monotonic() - began
        return self

    def _wait_until_accepting(self, began: float) -> None:
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self.process.returncode} at start:\n{self.log()}"
                )
            try:
                with psycopg.connect(self.url(), connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                pass  # not listening yet, or "the database system is starting up"
            if time.monotonic() - began > START_TIMEOUT_SECONDS:
                self.kill()
                raise RuntimeError(f"postgres did not accept connections in time:\n{self.log()}")
            time.sleep(0.02)

    def _postmaster(self) -> subprocess.Popen[bytes]:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("the cluster is not running")
        return self.process

    def stop(self, mode: StopMode = "fast") -> None:
        """A clean shutdown (smart: SIGTERM, fast: SIGINT, immediate: SIGQUIT); returns once the
        postmaster has exited, so the port refuses connections. A no-op when not running."""
        if not self.running:
            return
        postmaster = self._postmaster()
        self.resume()
        postmaster.send_signal(_STOP_SIGNALS[mode])
        try:
            postmaster.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"postgres did not stop ({mode}) in time:\n{self.log()}") from None

    def pause(self) -> None:
        """SIGSTOP the postmaster and all its children: new connections and running queries
        hang (not refused) until resume(). Returns once every one of them is stopped."""
        postmaster = self._postmaster()
        if self.paused_pids:
            return
        # The postmaster first, so it forks nothing more; its exited children stay zombies
        # (it cannot reap them) and their pids cannot be reused while it is stopped.
        os.kill(postmaster.pid, signal.SIGSTOP)
        self.paused_pids = [postmaster.pid]
        self._wait_stopped([postmaster.pid])
        children = _children_of(postmaster.pid)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)
        self.paused_pids += children
        self._wait_stopped(children)

    def _wait_stopped(self, pids: list[int]) -> None:
        def all_stopped() -> bool:
            states = [_process_state(pid) for pid in pids]
            return all(state is None or state[0] in "TtZX" for state in states)

        _wait_for(all_stopped, f"SIGSTOP to take hold of {pids}")

    def resume(self) -> None:
        """SIGCONT whatever pause() stopped (children first); a no-op unless paused."""
        pids, self.paused_pids = self.paused_pids, []
        if not pids or not self.running:
            return
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    @property
    def paused(self) -> bool:
        return bool(self.paused_pids) and self.running

    def kill(self) -> None:
        """SIGKILL the postmaster and all its children, as a crash would; the port refuses
        until start(), which runs crash recovery. A no-op when not running."""
        if not self.running:
            self.paused_pids = []
            return
        postmaster = self._postmaster()
        os.kill(postmaster.pid, signal.SIGSTOP)  # no more forks while we look
        self._wait_stopped([postmaster.pid])
        children = _children_of(postmaster.pid)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        postmaster.kill()
        postmaster.wait(timeout=SIGNAL_TIMEOUT_SECONDS)
        self.paused_pids = []
        _wait_dead(children)

    def restart(self, mode: StopMode = "fast") -> PostgresCluster:
        """Stop (if running) and start again on the same port and data directory."""
        self.stop(mode)
        return self.start()

    def close(self) -> None:
        """Stop whatever runs (fast, else kill), then remove the private data directory; the
        logs in `workdir` are left to tmp_path's cleanup."""
        try:
            if self.running:
                try:
                    self.stop("fast")
                except Exception:
                    self.kill()
            self._remove_stale_shared_memory()
        finally:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def _remove_stale_shared_memory(self) -> None:
        """After a kill with no restart, the postmaster's small SysV segment outlives it (only
        the next start would remove it): remove it if nothing is attached."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            shmid = int(lines[6].split()[1])
            for row in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]:
                fields = row.split()
                # key shmid perms size cpid lpid nattch uid ...
                if (
                    int(fields[1]) == shmid
                    and fields[6] == "0"
                    and int(fields[7]) == (self.user.pw_uid)
                ):
                    libc = ctypes.CDLL(None, use_errno=True)
                    libc.shmctl(shmid, 0, None)  # IPC_RMID

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- access ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def accepts_tcp(self, timeout: float = 0.2) -> bool:
        """Something accepts TCP connections on this cluster's port (a paused one does too)."""
        try:
            with socket.create_connection((HOST, self.port), timeout=timeout):
                return True
        except OSError:
            return False

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` on this cluster; its URL."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def database_url_on(cluster: PostgresCluster) -> str:
    """A fresh database of its own on `cluster`; its postgresql:// URL."""
    return cluster.create_database(f"ledger_t_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresCluster]:
    """A started PostgreSQL cluster of this test's own; stopped (or killed) and its data removed
    at teardown whatever the test did. Skips loudly (fails under CI=true) when none can be
    made."""
    reason = cluster_unavailable()
    if reason:
        missing_service(reason)
    cluster = PostgresCluster(tmp_path / "postgres")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
