"""What `benchmarks.http` needs to measure more than one ledger process: servers with workers
(process trees), rows read from the events table, and the library-level batch figure.

* `ledger_servers(url, count, workers)`: `count` x `ledger serve --workers W` on one database,
  each on its own port, once every worker of each has said whether it leads;
* `wait_idle(servers)`: like `harness.wait_quiet`, over each server's whole process tree (a
  server with workers is a supervisor and its children);
* `EventsRowsRead`: rows read from the ledger's events table (`ledger_events`) as PostgreSQL
  counts them (`pg_stat_user_tables`: seq_tup_read + idx_tup_fetch), read once the server's
  statistics have been flushed (an idle backend flushes them within about 10 s);
* `library_batches`: the ledger as a library (no HTTP, no read side), batches of the same
  events as the HTTP batch workload, one caller, on a database of its own;
* `follower_elsewhere(url)`: `ledger projections run` leading the read side from a process of
  its own, as a deployment runs it on another machine; paused (SIGSTOP) while a phase runs, it
  stands for that machine: the read side's work leaves these two cores until it is resumed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import psycopg

from benchmarks import harness
from benchmarks.harness import Server, Void
from ledger.admissions import AdmissionIn, PreparedOnUse
from service.composition import build_ledger
from service.settings import Settings
from tests.support.cli import stop_process
from tests.support.server import SERVE, server_env

EVENTS_TABLE = "ledger_events"
STATS_FLUSH_SECONDS = 11.0  # PostgreSQL: an idle backend flushes its statistics within 10 s
STATS_TIMEOUT_SECONDS = 60.0
WORKERS_START_SECONDS = 60.0
ROLE = re.compile(r"ledger: process (\d+) (leads|serves)")
FOLLOW = [sys.executable, "-m", "service.cli", "projections", "run"]
FOLLOW_STOP_SECONDS = 30.0


class Process(Protocol):
    @property
    def pid(self) -> int: ...


# --- servers with workers ----------------------------------------------------------------------


def roles(server: Server) -> dict[int, str]:
    """pid -> 'leads' or 'serves', as each worker of the server last said."""
    return {int(pid): role for pid, role in ROLE.findall(server.running.stderr())}


@contextlib.contextmanager
def ledger_servers(
    database_url: str, count: int, workers: int = 1, name: str = "ledger"
) -> Iterator[list[Server]]:
    """`count` servers of `workers` workers each, on one database; stopped at the end."""
    with contextlib.ExitStack() as stack:
        servers = []
        for n in range(count):
            command = [*SERVE, "--workers", str(workers)] if workers > 1 else None
            label = name if count == 1 else f"{name}#{n + 1}"
            server = stack.enter_context(harness.serving(label, database_url, command))
            deadline = time.monotonic() + WORKERS_START_SECONDS
            while len(roles(server)) < workers:
                server.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{label}: not every worker started:\n{server.tail()}")
                time.sleep(0.2)
            servers.append(server)
        yield servers


def leads(servers: Sequence[Server]) -> str:
    """Which process leads the read side, as the servers said."""
    for server in servers:
        for pid, role in roles(server).items():
            if role == "leads":
                return f"{server.name} (pid {pid})"
    return "none of these"


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of a process and its descendants (Linux /proc; None elsewhere)."""
    own = harness.cpu_seconds(pid)
    if own is None:
        return None
    tree = _children()
    total, stack = own, list(tree.get(pid, []))
    while stack:
        child = stack.pop()
        total += harness.cpu_seconds(child) or 0.0
        stack.extend(tree.get(child, []))
    return total


def wait_idle(servers: Sequence[Process], interval: float = 0.5, share: float = 0.05) -> float:
    """Wait (bounded) until every server's process tree uses under `share` of a core."""
    began = time.monotonic()
    deadline = began + harness.QUIET_TIMEOUT_SECONDS
    before = [tree_cpu_seconds(s.pid) for s in servers]
    if any(b is None for b in before):
        time.sleep(1.0)
        return time.monotonic() - began
    while time.monotonic() < deadline:
        time.sleep(interval)
        after = [tree_cpu_seconds(s.pid) for s in servers]
        if all(
            a is not None and b is not None and a - b < share * interval * (1 + len(_kids(s)))
            for a, b, s in zip(after, before, servers, strict=True)
        ):
            break
        before = after
    return time.monotonic() - began


def _kids(server: Process) -> list[int]:
    return _children().get(server.pid, [])


# --- the read side led from elsewhere ----------------------------------------------------------


@dataclass
class ElsewhereFollower:
    """`ledger projections run`, holding the leader lock: no server on the database follows."""

    process: subprocess.Popen[bytes]
    output: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def said(self) -> str:
        self.output.flush()
        return Path(self.output.name).read_text(errors="replace")

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


@contextlib.contextmanager
def follower_elsewhere(database_url: str) -> Iterator[ElsewhereFollower]:
    """`ledger projections run` on the database, once it says it leads; stopped at the end."""
    with tempfile.NamedTemporaryFile(prefix="ledger-follow-", suffix=".stderr") as output:
        process = subprocess.Popen(
            FOLLOW,
            env=server_env(database_url),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
        follower = ElsewhereFollower(process, output)
        try:
            deadline = time.monotonic() + WORKERS_START_SECONDS
            while f"ledger: process {process.pid} leads" not in follower.said():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"`ledger projections run` did not lead:\n{follower.said()}")
                time.sleep(0.2)
            yield follower
        finally:
            with contextlib.suppress(ProcessLookupError):
                follower.resume()
            stop_process(process, signal.SIGTERM, timeout=FOLLOW_STOP_SECONDS)


# --- rows read from the events table -----------------------------------------------------------


class EventsRowsRead:
    """The events table's rows read so far (PostgreSQL's statistics; None on SQLite)."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url if database_url.startswith("postgresql") else None

    def now(self) -> int | None:
        if self.url is None:
            return None
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                "FROM pg_stat_user_tables WHERE relname = %s",
                (EVENTS_TABLE,),
            ).fetchone()
        return int(row[0]) if row else 0

    def settled(self) -> int | None:
        """The count once every backend has flushed what it read (bounded): at least
        STATS_FLUSH_SECONDS after the load stopped, and unchanged over the last second."""
        if self.url is None:
            return None
        began = time.monotonic()
        last = self.now()
        while time.monotonic() - began < STATS_TIMEOUT_SECONDS:
            time.sleep(1.0)
            current = self.now()
            if current == last and time.monotonic() - began >= STATS_FLUSH_SECONDS:
                return current
            last = current
        return last


# --- events per commit ------------------------------------------------------------------------


class EventsPerCommit:
    """How many events each write transaction committed: the events table's rows between two
    notification ids, and their distinct `xmin` (one per committed transaction). PostgreSQL
    only (None on SQLite)."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url if database_url.startswith("postgresql") else None

    def head(self) -> int | None:
        if self.url is None:
            return None
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(f"SELECT max(notification_id) FROM {EVENTS_TABLE}").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def between(self, after: int, upto: int) -> tuple[int, int]:
        """(events, transactions) with notification ids in (after, upto]."""
        assert self.url is not None
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                f"SELECT count(*), count(DISTINCT xmin::text) FROM {EVENTS_TABLE} "
                "WHERE notification_id > %s AND notification_id <= %s",
                (after, upto),
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)


# --- the library-level figure -------------------------------------------------------------------


def library_batches(
    database_url: str,
    *,
    batch: int,
    windows: int,
    seconds: float,
    warmup: float,
) -> tuple[int, float]:
    """Admit batches of `batch` new events (the HTTP workload's events) for `seconds`, one
    caller, windows in turn, after `warmup` seconds of the same; returns (events admitted,
    seconds spent admitting them: making each batch's items is not timed). Every one must be
    ADMITTED. Prepared on use, as a library caller would (ADR 0040)."""
    ledger = build_ledger(Settings(database_url=database_url))
    try:
        counter = 0

        def one(tag: str) -> tuple[int, float]:
            """One batch admitted: (events, seconds in `Ledger.admit`). Its items are made
            before the clock starts, as `benchmarks.admission` never times its workload."""
            nonlocal counter
            counter += 1
            window = f"{tag}-w{counter % windows}"
            items = [
                AdmissionIn(
                    event_type="bench.item",
                    event_id=f"{tag}-{counter}-{i}",
                    payload={"seq": i, "kind": "benchmark", "amount_cents": 1250},
                )
                for i in range(1, batch + 1)
            ]
            began = time.perf_counter()
            results = ledger.admit(window, PreparedOnUse(window, items))
            spent = time.perf_counter() - began
            if any(r.verdict.value != "ADMITTED" for r in results):
                raise Void(f"library run: not every event of {window} was ADMITTED")
            return len(results), spent

        end = time.monotonic() + warmup
        while time.monotonic() < end:
            one("library-warm")
        done, timed = 0, 0.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            events, spent = one("library")
            done += events
            timed += spent
        return done, timed
    finally:
        ledger.close()
