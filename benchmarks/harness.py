"""The one harness of the benchmarks: everything a benchmark needs besides its workload and its
contenders.

Every benchmark runs from the project root as a module, so that no file of this package shadows
a module of the standard library or of the project (`benchmarks/http.py` and `http`,
`benchmarks/projections.py` and `projections`):

    .venv/bin/python -m benchmarks.admission --help
    .venv/bin/python -m benchmarks.http --help
    .venv/bin/python -m benchmarks.projections --help

Here, one copy each: printing (figures on stdout, progress on stderr); throwaway databases (SQLite
files in a temporary directory, PostgreSQL databases made by `tests.support.services` and dropped
at the end); servers (a nats-server of the benchmark's own, from `tests.support.nats`; `ledger
serve` and any uvicorn app as subprocesses on free ports); timing, progress by tenths, ratios and
their PASS/MISS verdicts; memory (peak and current RSS); load average; the --profile switch. Every
server binds 127.0.0.1 and every request goes there.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TypeVar
from urllib.parse import urlsplit

import psycopg

if TYPE_CHECKING:
    from tests.support.nats import NatsServer
    from tests.support.server import RunningServer

# tests.support is imported where it is used, not here: what a benchmark imports stays out of
# the peak RSS it reports unless it needs it (tests.support.services brings pytest along,
# tests.support.server httpx).
HEALTH_TIMEOUT_SECONDS = 60.0
QUIET_TIMEOUT_SECONDS = 60.0

T = TypeVar("T")
Out = TypeVar("Out")

# --- printing ---------------------------------------------------------------------------------


def say(*parts: object) -> None:
    """A line of the figures (stdout)."""
    print(*parts, flush=True)


def note(*parts: object) -> None:
    """A line of progress (stderr)."""
    print(*parts, file=sys.stderr, flush=True)


class Void(Exception):
    """A stored or projected result is not what the workload implies: the figures are void."""


# --- timing and ratios ------------------------------------------------------------------------


def timed(work: Callable[[], T]) -> tuple[T, float]:
    """What `work()` returns, and the seconds it took."""
    t0 = time.perf_counter()
    result = work()
    return result, time.perf_counter() - t0


def per_second(count: float, seconds: float) -> float:
    return count / seconds if seconds else 0.0


@dataclass
class Timed:
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return per_second(self.events, self.seconds)


class Rated(Protocol):
    @property
    def rate(self) -> float: ...


R = TypeVar("R", bound=Rated)


def best(runs: Iterable[R]) -> R:
    """The better run of a contender run twice (warm-up favours no one)."""
    return max(runs, key=lambda r: r.rate)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def verdict(value: float, target: float) -> str:
    return "PASS" if value >= target else "MISS"


def target_note(value: float, target: float) -> str:
    return f"(target >= {target}: {verdict(value, target)})"


def say_ratio(
    label: str, what: str, value: float, comment: str, *, digits: int = 2, gap: str = "  "
) -> None:
    """The line the README quotes: `RATIO <backend> <what> = <value><gap><comment>`."""
    say(f"RATIO {label} {what} = {value:.{digits}f}{gap}{comment}")


class Tenths:
    """One progress line per 10% of a run (fewer when its steps are fewer than ten)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.next = 1

    def crossed(self, done: int) -> int | None:
        """The tenths reached when `done` crosses into another tenth, else None."""
        tenths = done * 10 // self.total if self.total else 10
        if tenths < self.next:
            return None
        self.next = tenths + 1
        return min(tenths, 10)


# --- the machine --------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the --profile switch ---------------------------------------------------------------------


def add_profile_argument(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--profile", metavar="PATH", default=None, help=help)


def profiled(work: Callable[[], T]) -> tuple[T, cProfile.Profile]:
    """Run `work()` under cProfile."""
    profiler = cProfile.Profile()
    profiler.enable()
    result = work()
    profiler.disable()
    return result, profiler


def write_profile(profiler: cProfile.Profile, path: Path, heading: str, top: int) -> None:
    """Write the stats to `path`, then print `heading` and the top functions to stderr."""
    profiler.dump_stats(path)
    note(heading)
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(30)


# --- throwaway databases ----------------------------------------------------------------------


def add_postgres_url_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("LEDGER_BENCH_POSTGRES_URL"),
        help="admin URL: the benchmark creates and drops a database of its own there (if not "
        "given: LEDGER_BENCH_POSTGRES_URL, else the tests' tests.support.services.ADMIN_URL)",
    )


def admin_url(given: str | None) -> str:
    """--postgres-url, else the tests' admin URL (LEDGER_TEST_POSTGRES_URL or the local server)."""
    if given:
        return given
    from tests.support import services

    return services.ADMIN_URL


class Databases:
    """The databases of one backend for one run, all gone at close().

    `url` is the first database; `fresh(name)` makes another that no one has used. SQLite: files
    in a temporary directory; PostgreSQL: throwaway databases on the admin URL's server (made and
    dropped by tests.support.services). The directory exists for either backend (logs, scripts,
    files of the baselines) and goes at close() too.
    """

    def __init__(self, backend: str, postgres_url: str | None, prefix: str) -> None:
        self.backend = backend
        self.admin_url = admin_url(postgres_url) if backend == "postgres" else ""
        self._stack = contextlib.ExitStack()
        self.dir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        try:
            self.url = self.fresh("ledger")  # PostgreSQL: fails here if unreachable
        except BaseException:
            self._stack.close()
            raise

    def fresh(self, name: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.dir / f'{name}.db'}"
        from tests.support.services import throwaway_database

        return self._stack.enter_context(throwaway_database(self.admin_url))

    def describe_postgres(self) -> str:
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        parts = urlsplit(self.url)
        return (
            f"PostgreSQL {row[0] if row else 'unknown'} at {parts.hostname}:{parts.port or 5432}, "
            f"throwaway database {parts.path.lstrip('/')} (dropped at the end)"
        )

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Databases:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_backends(
    choice: str,
    postgres_url: str | None,
    prefix: str,
    bench: Callable[[Databases], Out],
    report: Callable[[Out], None],
) -> tuple[int, list[Out]]:
    """Bench and report each backend of `choice` (sqlite, postgres or both) on databases of its
    own. The exit code is 2 if PostgreSQL cannot be used, 3 if the figures are void."""
    outcomes: list[Out] = []
    for label in ["sqlite", "postgres"] if choice == "both" else [choice]:
        try:
            databases = Databases(label, postgres_url, prefix)
        except psycopg.Error as exc:
            say(f"ERROR: cannot use PostgreSQL at {admin_url(postgres_url)}: {exc}")
            return 2, outcomes
        try:
            outcomes.append(bench(databases))
        except Void as exc:
            say(f"ERROR: {label}: {exc}")
            return 3, outcomes
        finally:
            databases.close()
        report(outcomes[-1])
    return 0, outcomes


# --- servers: nats-server ---------------------------------------------------------------------


def find_nats_server(explicit: str | None) -> str | None:
    """The binary named (and nothing else, if one is named), else the one the tests use."""
    if explicit is None:
        from tests.support.nats import nats_server_binary

        return nats_server_binary()
    return explicit if Path(explicit).is_file() and os.access(explicit, os.X_OK) else None


def nats_version(binary: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    return "unknown"


@contextlib.contextmanager
def own_nats_server(binary: str) -> Iterator[NatsServer]:
    """A nats-server of the benchmark's own (JetStream, file store in a temporary directory, a
    free 127.0.0.1 port), killed and its store removed at the end."""
    from tests.support.nats import NatsServer

    with tempfile.TemporaryDirectory(prefix="bench-nats-") as workdir:
        server = NatsServer(Path(workdir), binary)
        try:
            server.start()
            yield server
        finally:
            server.close()


# --- servers: `ledger serve` and uvicorn apps as subprocesses ---------------------------------


def ledger_db_upgrade(database_url: str) -> str:
    """`ledger db upgrade` on the database; returns what it printed."""
    from tests.support.cli import run_cli

    completed = run_cli(database_url, "db", "upgrade")
    if completed.returncode != 0:
        raise RuntimeError(f"ledger db upgrade failed:\n{completed.stdout}{completed.stderr}")
    return completed.stdout.strip()


@dataclass
class Server:
    """A server subprocess answering GET /health on 127.0.0.1 (tests.support.server)."""

    name: str
    running: RunningServer

    @property
    def port(self) -> int:
        return int(urlsplit(self.running.url).port or 0)

    @property
    def pid(self) -> int:
        return self.running.process.pid

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.running.stderr().splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.running.process.poll() is not None:
            raise RuntimeError(f"{self.name} died:\n{self.tail()}")


@contextlib.contextmanager
def serving(name: str, database_url: str, command: Sequence[str] | None = None) -> Iterator[Server]:
    """`command --host 127.0.0.1 --port N` on a free port (default: the real service, `ledger
    serve`, as an operator starts it, embedded publisher, auth off), once GET /health answers
    200; SIGTERM (then SIGKILL) at the end."""
    from tests.support.server import SERVE, running_server

    with running_server(
        database_url, command=command or SERVE, start_timeout=HEALTH_TIMEOUT_SECONDS
    ) as running:
        yield Server(name, running)


def wait_quiet(servers: Sequence[Server], interval: float = 0.5, share: float = 0.05) -> float:
    """Wait (bounded) until every server uses under `share` of a core (CPU time from /proc).
    Returns the seconds waited."""
    began = time.monotonic()
    deadline = began + QUIET_TIMEOUT_SECONDS
    before = [cpu_seconds(s.pid) for s in servers]
    if any(b is None for b in before):
        time.sleep(1.0)
        return time.monotonic() - began
    while time.monotonic() < deadline:
        time.sleep(interval)
        after = [cpu_seconds(s.pid) for s in servers]
        if all(
            a is not None and b is not None and a - b < share * interval
            for a, b in zip(after, before, strict=True)
        ):
            break
        before = after
    return time.monotonic() - began
