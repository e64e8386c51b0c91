"""Single-event writes into windows holding many identities whose publish outcome is unknown
(ADR 0045), against the same into windows holding none, in the same run.

    .venv/bin/python -m benchmarks.pending                    # 20,000 pending a window, both
    .venv/bin/python -m benchmarks.pending --pending 50000 --backend postgres

While the bus does not answer, every admission's outcome is unknown and stays pending in its
window's state until it is reconciled; a window may hold a whole outage's. For each backend, on
a database of its own, one ledger (`build_ledger`, the group commit of the service):

* fill (not timed): four "outage" windows of `--pending` admissions each, written in batches of
  500 with a publisher that answers "unknown" to everything (as a bus that times out), and four
  "clear" windows of 500 admitted events each; then the publisher answers again.
* phases, `--duration` seconds each, in the order clear, outage, outage, clear (each scored by
  the better of its two runs): `--clients` concurrent callers on one asyncio loop, each sending
  one new event a request to the set's four windows in turn and awaiting its answer
  (`Ledger.submit_with_others`, as the HTTP handler does), so the requests are written in
  groups of about `--clients`. Figures: requests/s, and the CPU time of the group-commit writer
  thread a request (from /proc: Linux).
* checks (void, exit 3, when one fails): every answer ADMITTED; each outage window still holds
  its `--pending` identities.

Printed: `RATIO <backend> writer CPU a request, clear/outage` (target >= 0.8: the writer's work
a request does not grow with the window's pending set) and `RATIO <backend> requests/s
outage/clear` (for information: a snapshot, every 500 events a window, holds the pending set,
so the database writes more). The machine is noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import Databases, Void, note, say
from ledger.admissions import AdmissionIn, prepare
from ledger.application import Ledger
from ledger.ports import Message, Published, PublishOutcome, Unknown
from service.composition import build_ledger
from service.settings import Settings

DEFAULT_PENDING = 20_000
DEFAULT_CLIENTS = 32
WINDOWS = 4
BATCH = 500
TARGET_CPU_RATIO = 0.8


class OutageBus:
    """The ledger's offsets while `down` is False (as the embedded bus); "unknown" while it is
    True, as a bus that does not answer."""

    name = "outage"

    def __init__(self) -> None:
        self.down = True
        self.published = 0

    def publish(
        self, window_id: str, messages: Sequence[Message], next_sequence: int
    ) -> list[PublishOutcome]:
        if self.down:
            return [Unknown("the bench's bus is down") for _ in messages]
        first = self.published + 1
        self.published += len(messages)
        return [Published(first + i) for i in range(len(messages))]

    def close(self) -> None:
        pass


@dataclass
class Phase:
    label: str
    requests: int
    seconds: float
    writer_cpu: float

    @property
    def rate(self) -> float:
        return harness.per_second(self.requests, self.seconds)

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.writer_cpu / max(1, self.requests)


@dataclass
class Outcome:
    label: str
    pending: int
    phases: dict[str, list[Phase]] = field(default_factory=dict)


def thread_cpu_seconds(native_id: int) -> float:
    """User + system CPU of one thread of this process (Linux)."""
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def items(tag: str, start: int, count: int) -> list[AdmissionIn]:
    return [
        AdmissionIn(
            event_type="bench.pending",
            event_id=f"{tag}-{n}",
            payload={"n": n, "kind": "benchmark", "amount_cents": 1250},
        )
        for n in range(start, start + count)
    ]


def fill(ledger: Ledger, window_id: str, count: int, tag: str) -> None:
    for start in range(0, count, BATCH):
        size = min(BATCH, count - start)
        ledger.admit(window_id, prepare(window_id, items(tag, start, size)))


async def drive(ledger: Ledger, windows: list[str], clients: int, seconds: float, tag: str) -> int:
    """Single-event requests from `clients` concurrent callers for `seconds`; how many."""
    done = 0
    stop = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal done
        sent = 0
        while time.monotonic() < stop:
            window_id = windows[(n + sent) % len(windows)]
            batch = prepare(window_id, items(f"{tag}-c{n}", sent, 1))
            results = await asyncio.wrap_future(ledger.submit_with_others(window_id, batch))
            if results[0].verdict.value != "ADMITTED":
                raise Void(f"{window_id}: {results[0].verdict.value}, not ADMITTED")
            sent += 1
            done += 1

    await asyncio.gather(*(client(n) for n in range(clients)))
    return done


def phase(ledger: Ledger, label: str, windows: list[str], args: argparse.Namespace) -> Phase:
    tag = f"{label}-{time.monotonic_ns()}"
    asyncio.run(drive(ledger, windows, args.clients, 1.0, f"{tag}-warm"))
    writer = next(t for t in threading.enumerate() if t.name == "ledger-group-commit")
    assert writer.native_id is not None
    cpu = thread_cpu_seconds(writer.native_id)
    began = time.perf_counter()
    requests = asyncio.run(drive(ledger, windows, args.clients, args.duration, tag))
    seconds = time.perf_counter() - began
    measured = Phase(label, requests, seconds, thread_cpu_seconds(writer.native_id) - cpu)
    note(
        f"  run: {label:7s} {measured.rate:8,.0f} requests/s, writer CPU "
        f"{measured.cpu_us:6.1f} us a request"
    )
    return measured


def bench_backend(databases: Databases, args: argparse.Namespace) -> Outcome:
    label = databases.backend
    outcome = Outcome(label, args.pending)
    bus = OutageBus()
    ledger = build_ledger(Settings(database_url=databases.url), bus)
    try:
        sets = {
            "clear": [f"bench-clear-{w}" for w in range(WINDOWS)],
            "outage": [f"bench-outage-{w}" for w in range(WINDOWS)],
        }
        began = time.perf_counter()
        for window_id in sets["outage"]:
            fill(ledger, window_id, args.pending, f"{window_id}-fill")
        bus.down = False
        for window_id in sets["clear"]:
            fill(ledger, window_id, BATCH, f"{window_id}-fill")
        note(f"[{label}] filled in {time.perf_counter() - began:.1f} s")
        for which in ("clear", "outage", "outage", "clear"):
            outcome.phases.setdefault(which, []).append(phase(ledger, which, sets[which], args))
        for window_id in sets["outage"]:
            held = len(ledger.get_window(window_id).pending)
            if held != args.pending:
                raise Void(f"{window_id} holds {held:,} pending identities, not {args.pending:,}")
    finally:
        ledger.close()
    return outcome


def report(o: Outcome) -> None:
    clear = max(o.phases["clear"], key=lambda p: p.rate)
    outage = max(o.phases["outage"], key=lambda p: p.rate)
    clear_cpu = min(p.cpu_us for p in o.phases["clear"])
    outage_cpu = min(p.cpu_us for p in o.phases["outage"])
    say(f"\n== {o.label}: {WINDOWS} windows holding {o.pending:,} pending identities each")
    say(f"  clear  {clear.rate:8,.0f} requests/s, writer CPU {clear_cpu:6.1f} us a request (best)")
    say(
        f"  outage {outage.rate:8,.0f} requests/s, writer CPU {outage_cpu:6.1f} us a request (best)"
    )
    cpu_ratio = harness.ratio(clear_cpu, outage_cpu)
    say(
        f"RATIO {o.label} writer CPU a request, clear/outage = {cpu_ratio:.2f} "
        f"{harness.target_note(cpu_ratio, TARGET_CPU_RATIO)}"
    )
    say(
        f"RATIO {o.label} requests/s outage/clear = {harness.ratio(outage.rate, clear.rate):.2f} "
        "(for information)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pending",
        description="Single-event writes into windows with many pending identities vs none.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pending", type=int, default=DEFAULT_PENDING)
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds a phase")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    harness.add_postgres_url_argument(parser)
    args = parser.parse_args(argv)
    if args.pending < 1 or args.clients < 1 or args.duration <= 0:
        parser.error("--pending and --clients must be at least 1, --duration above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    say(
        f"pending benchmark: {args.pending:,} pending identities a window, {args.clients} "
        f"clients, {args.duration:g} s a phase; machine: {os.cpu_count()} CPUs, load average "
        f"{harness.load_average()}"
    )
    code, _ = harness.run_backends(
        args.backend,
        args.postgres_url,
        "bench-pending-",
        lambda databases: bench_backend(databases, args),
        report,
    )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
