"""Read-side throughput: rebuilding the projections against reading the notification log raw.

    .venv/bin/python -m benchmarks.projections          # 100,000 admissions, both backends
    .venv/bin/python -m benchmarks.projections --backend postgres --profile /tmp/rebuild

For each backend, in one run and one process, on a database of its own (an SQLite file in a
temporary directory; a PostgreSQL database created for the run and dropped at the end):

* fill (not timed for the figures): `prepare` + `Ledger.admit` in batches of 500, round robin
  over several windows; about 89% new identities, 10% exact duplicates of an earlier identity of
  the same window, 1% mismatches (an earlier identity, a different payload); every item has a
  source partition/offset. Then some windows are closed (`Ledger.close_window`). Each admission
  is one stored event, plus one WindowOpened per window and one WindowClosed per closed window.
  The live read models are then brought up to the head (`run_until_caught_up`), so the rebuild
  replaces populated tables, as it would on a running service.
* measured, in this order, with a fresh `build_services` (an empty runner, as the CLI has):
    raw read   `recorder.select_notifications(after, 1000, inclusive_of_start=False)` from the
               start to the head: the floor of any pass over the log;
    rebuild    `services.runner.rebuild()`: every projection rebuilt blue/green, one pass over
               the log each (read, decode, apply into `__next` tables, switch);
    raw read   again; the raw read is scored by the better of its two runs (warm-up and cache
               favour no one, and the baseline is given its best).
* figures:
    raw read events/s   = log events / seconds of the read;
    rebuild events/s    = head x projections / rebuild wall time: log events processed per
                          second per projection pass (each projection reads the whole log);
    ratio               = rebuild events/s / raw read events/s; target >= 0.25 on each backend.
  "read + decode" (the raw read plus the transcoder's decode) is printed for information.
* checks (the figures are void, exit 3, if one fails): the write side's counts match the
  workload; after the rebuild every projection's position is the head, the rebuilt tables equal
  the incrementally built ones row for row, and every window's read-side receipt equals the write
  side's receipt (counts, offsets, events, chain head, status and gate).

The machine is noisy: compare the ratios printed by one run, not absolute figures.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from benchmarks import harness
from benchmarks.harness import Databases, Timed, Void, note, say
from ledger.admissions import MAX_BATCH, AdmissionIn, SourceIn, prepare
from projections.follower import ProjectionRunner
from projections.migrate import upgrade
from projections.store import create_read_store
from service.composition import Services, build_services
from service.settings import Settings

DEFAULT_EVENTS = 100_000
DEFAULT_BATCH = 500
DEFAULT_WINDOWS = 10
DEFAULT_SEED = 20261126
READ_PAGE = 1000  # the runner's page
DUPLICATE_SHARE = 0.10
MISMATCH_SHARE = 0.01
PARTITIONS = 4
TARGET_RATIO = 0.25  # rebuild events/s per projection pass / raw read events/s, each backend
EVENT_TYPES = ("order.created", "order.paid", "order.shipped")
CURRENCIES = ("EUR", "USD", "GBP", "CHF")
PROFILE_TOP = 15


# --- workload ---------------------------------------------------------------------------------


def _payload(w: int, j: int, seed: int, revision: int = 0) -> dict[str, Any]:
    """The payload of new event j of window w (revision > 0: a different payload, same identity)."""
    h = ((w * 1_000_003 + j + 1) * 2654435761 + seed) & 0xFFFFFFFF
    return {
        "order_id": f"ord-{w:02d}-{j:08d}",
        "customer": f"cust-{(h >> 3) % 50000:05d}",
        "amount_cents": h % 100000 + revision,
        "currency": CURRENCIES[(h >> 7) % len(CURRENCIES)],
        "sku": f"SKU-{(h >> 11) % 10000:04d}",
        "qty": 1 + (h >> 17) % 5,
    }


@dataclass(frozen=True)
class Workload:
    events: int
    batch_size: int
    windows: int
    seed: int

    @property
    def n_batches(self) -> int:
        return -(-self.events // self.batch_size)

    @property
    def window_ids(self) -> list[str]:
        return [f"bench-w{k:02d}" for k in range(self.windows)]

    @property
    def closed(self) -> list[str]:
        """Two windows in five are closed after their last batch (window 0 always)."""
        return [w for k, w in enumerate(self.window_ids) if k % 5 < 2]

    def _plan(self) -> Iterator[tuple[int, int, str, int, int]]:
        """(batch, window, kind, j, arrival) per item; the same sequence on every call.

        Batch b goes to window b % windows; a duplicate or mismatch names an earlier identity
        of the same window (an identity is per window)."""
        rng = random.Random(self.seed)
        new = [0] * self.windows
        arrivals = [0] * self.windows
        for b in range(self.n_batches):
            w = b % self.windows
            for _ in range(min(self.batch_size, self.events - b * self.batch_size)):
                r = rng.random()
                if new[w] == 0 or r >= DUPLICATE_SHARE + MISMATCH_SHARE:
                    kind, j = "new", new[w]
                    new[w] += 1
                elif r < DUPLICATE_SHARE:
                    kind, j = "duplicate", rng.randrange(new[w])
                else:
                    kind, j = "mismatch", rng.randrange(new[w])
                yield b, w, kind, j, arrivals[w]
                arrivals[w] += 1

    def batches(self) -> Iterator[tuple[str, list[AdmissionIn]]]:
        ids = self.window_ids
        batch: list[AdmissionIn] = []
        current = 0
        for b, w, kind, j, arrival in self._plan():
            if b != current:
                yield ids[current % self.windows], batch
                batch, current = [], b
            revision = 1 + arrival % 7 if kind == "mismatch" else 0
            batch.append(
                AdmissionIn(
                    event_type=EVENT_TYPES[j % len(EVENT_TYPES)],
                    event_id=f"evt-{j:08d}",
                    payload=_payload(w, j, self.seed, revision),
                    source=SourceIn(partition=f"part-{arrival % PARTITIONS}", offset=arrival),
                )
            )
        if batch:
            yield ids[current % self.windows], batch

    def counts(self) -> dict[str, dict[str, int]]:
        """Expected (admitted, duplicates, quarantined) per window."""
        ids = self.window_ids
        counts = {w: {"admitted": 0, "duplicates": 0, "quarantined": 0} for w in ids}
        key = {"new": "admitted", "duplicate": "duplicates", "mismatch": "quarantined"}
        for _, w, kind, _, _ in self._plan():
            counts[ids[w]][key[kind]] += 1
        return counts

    def expected_log_events(self) -> int:
        return self.events + self.windows + len(self.closed)


# --- the database -----------------------------------------------------------------------------


def describe(databases: Databases) -> str:
    if databases.backend == "postgres":
        return databases.describe_postgres()
    return (
        f"SQLite {sqlite3.sqlite_version}, file {databases.dir / 'ledger.db'} (WAL; events and "
        "read models in the same file, as deployed)"
    )


# --- the measured passes ----------------------------------------------------------------------


def raw_read(services: Services, head: int, decode: bool = False) -> Timed:
    """Every notification from the start to the head, in the runner's pages (and decoded)."""
    recorder = services.ledger.recorder
    transcoder = services.ledger.mapper.transcoder

    def read() -> int:
        after, events = 0, 0
        while after < head:
            page = recorder.select_notifications(after, READ_PAGE, inclusive_of_start=False)
            if not page:
                break
            if decode:
                for n in page:
                    transcoder.decode(n.state)
            events += len(page)
            after = page[-1].id
        return events

    return Timed(*harness.timed(read))


class Progress:
    """Rebuild progress on stderr (one line per 10%), and when each projection's pass ended."""

    def __init__(self, label: str, head: int, names: list[str]) -> None:
        self.label, self.head, self.names = label, head, names
        self.total = head * len(names)
        self.done = 0
        self.tenths = harness.Tenths(self.total)
        self.t0 = time.perf_counter()
        self.pass_ends: list[float] = []

    def __call__(self, n: int) -> None:
        self.done += n
        while len(self.pass_ends) < len(self.names) and self.done >= self.head * (
            len(self.pass_ends) + 1
        ):
            self.pass_ends.append(time.perf_counter() - self.t0)
        tenths = self.tenths.crossed(self.done)
        if tenths is not None:
            elapsed = time.perf_counter() - self.t0
            note(
                f"[{self.label}] rebuild: {tenths * 10:3d}% "
                f"{self.done:,}/{self.total:,} projection-events, {elapsed:.1f} s"
            )


def fill(label: str, services: Services, workload: Workload) -> float:
    """Admit the workload and close some windows; return the seconds it took."""
    total = workload.n_batches
    progress = harness.Tenths(total)
    t0 = time.perf_counter()
    for i, (window_id, items) in enumerate(workload.batches(), start=1):
        services.ledger.admit(window_id, prepare(window_id, items))
        tenths = progress.crossed(i)
        if tenths is not None:
            elapsed = time.perf_counter() - t0
            note(
                f"[{label}] fill: {tenths * 10:3d}% {i:,}/{total:,} batches, {elapsed:.1f} s "
                f"({min(i * workload.batch_size, workload.events) / elapsed:,.0f} admissions/s)"
            )
    for window_id in workload.closed:
        services.ledger.close_window(window_id)
    return time.perf_counter() - t0


def check_write_side(services: Services, workload: Workload) -> None:
    for window_id, want in workload.counts().items():
        counts = services.ledger.get_window(window_id).counts()
        got = {k: counts[k] for k in want}
        if got != want:
            raise Void(f"write side of {window_id}: counts {got}, expected {want}")
    for window_id in workload.closed:
        if not services.ledger.get_window(window_id).is_closed:
            raise Void(f"{window_id} should be closed")


def snapshot(services: Services) -> dict[str, str]:
    """A digest of every projection table's rows in primary-key order."""
    digests = {}
    with services.store.reader.connect() as conn:
        for projection in services.runner.projections:
            for table in projection.tables():
                h = hashlib.sha256()
                rows = 0
                for row in conn.execute(select(table).order_by(*table.primary_key.columns)):
                    h.update(repr(tuple(row)).encode())
                    rows += 1
                digests[table.name] = f"{rows} rows, sha256 {h.hexdigest()[:16]}"
    return digests


def check_read_side(
    services: Services, workload: Workload, head: int, before: dict[str, str]
) -> None:
    positions = services.runner.positions()
    behind = {name: p for name, p in positions.items() if p != head}
    if behind:
        raise Void(f"after the rebuild, positions {behind} are not the head {head}")
    after = snapshot(services)
    if after != before:
        raise Void(
            f"the rebuilt tables differ from the incrementally built ones: {before} -> {after}"
        )
    for window_id in workload.window_ids:
        read = services.receipt(window_id)
        write = services.ledger.receipt(window_id)
        for key in ("status", "counts", "bus_offsets", "source_offsets", "events", "chain_head"):
            if read[key] != write[key]:
                raise Void(f"{window_id} {key}: read side {read[key]!r}, write side {write[key]!r}")
        if read["gate"] != write["gate"]:
            raise Void(f"{window_id} gate: read side {read['gate']}, write side {write['gate']}")
        if window_id in workload.closed and read["gate"] != "PASS":
            raise Void(f"{window_id} is closed but its gate reads {read['gate']}")


# --- one backend ------------------------------------------------------------------------------


@dataclass
class Outcome:
    label: str
    head: int
    projections: list[str]
    reads: list[Timed] = field(default_factory=list)
    decodes: list[Timed] = field(default_factory=list)
    rebuild_seconds: float = 0.0
    pass_ends: list[float] = field(default_factory=list)
    fill_seconds: float = 0.0
    catch_up_seconds: float = 0.0

    @property
    def read(self) -> Timed:
        return harness.best(self.reads)

    @property
    def decode(self) -> Timed:
        return harness.best(self.decodes)

    @property
    def rebuild_rate(self) -> float:
        return harness.per_second(self.head * len(self.projections), self.rebuild_seconds)

    @property
    def ratio(self) -> float:
        return harness.ratio(self.rebuild_rate, self.read.rate)

    @property
    def verdict(self) -> str:
        return harness.verdict(self.ratio, TARGET_RATIO)


def migrated_services(url: str) -> Services:
    settings = Settings(database_url=url)
    store = create_read_store(settings.database_url)
    try:
        upgrade(store)
    finally:
        store.dispose()
    return build_services(settings)


def profile_rebuild(label: str, runner: ProjectionRunner, path: str) -> None:
    (_, seconds), profiler = harness.profiled(lambda: harness.timed(runner.rebuild))
    out = Path(path).with_suffix(f".{label}.pstats")
    heading = (
        f"[{label}] profiled rebuild (extra, not scored): {seconds:.2f} s under cProfile; "
        f"stats written to {out}; top {PROFILE_TOP} by tottime:"
    )
    harness.write_profile(profiler, out, heading, top=PROFILE_TOP)


def bench_backend(databases: Databases, workload: Workload, args: argparse.Namespace) -> Outcome:
    label = databases.backend
    say(f"\n== {label}: {describe(databases)}")

    services = migrated_services(databases.url)
    try:
        note(f"[{label}] filling the ledger ...")
        fill_seconds = fill(label, services, workload)
        check_write_side(services, workload)
        head = services.runner.head()
        note(f"[{label}] bringing the live read models up to the head ({head:,}) ...")
        t0 = time.perf_counter()
        services.runner.run_until_caught_up()
        catch_up_seconds = time.perf_counter() - t0
        incremental = snapshot(services)
    finally:
        services.close()

    services = build_services(Settings(database_url=databases.url))  # a fresh runner, as the CLI
    try:
        runner = services.runner
        names = [p.name for p in runner.projections]
        outcome = Outcome(
            label, head, names, fill_seconds=fill_seconds, catch_up_seconds=catch_up_seconds
        )
        say(
            f"  log: head {head:,} ({workload.expected_log_events():,} expected: "
            f"{workload.events:,} admissions + {workload.windows} WindowOpened + "
            f"{len(workload.closed)} WindowClosed); fill took {fill_seconds:.1f} s; live "
            f"catch-up (all {len(names)} projections per page) {catch_up_seconds:.1f} s"
        )
        if head != workload.expected_log_events():
            raise Void(f"head {head} is not the expected {workload.expected_log_events()}")

        def read_both(when: str) -> None:
            note(f"[{label}] raw read ({when}) ...")
            outcome.reads.append(raw_read(services, head))
            if outcome.reads[-1].events != head:
                raise Void(f"raw read saw {outcome.reads[-1].events} events, head is {head}")
            outcome.decodes.append(raw_read(services, head, decode=True))
            say(
                f"  run: raw read ({when})  {outcome.reads[-1].rate:>10,.0f} events/s "
                f"({head:,} in {outcome.reads[-1].seconds:.2f} s); read + decode "
                f"{outcome.decodes[-1].rate:,.0f} events/s (for information)"
            )

        read_both("before")
        note(f"[{label}] rebuilding {', '.join(names)} ...")
        progress = Progress(label, head, names)
        t0 = time.perf_counter()
        runner.rebuild(progress=progress)
        outcome.rebuild_seconds = time.perf_counter() - t0
        outcome.pass_ends = progress.pass_ends
        say(
            f"  run: rebuild           {outcome.rebuild_rate:>10,.0f} events/s per projection "
            f"pass ({head:,} x {len(names)} in {outcome.rebuild_seconds:.2f} s)"
        )
        read_both("after")
        check_read_side(services, workload, head, incremental)
        say(
            "  checks: write-side counts, positions at head, rebuilt tables = incremental "
            "tables, read-side receipts = write-side receipts: OK"
        )
        if args.profile:
            profile_rebuild(label, runner, args.profile)
            check_read_side(services, workload, head, incremental)
    finally:
        services.close()
    return outcome


def report(o: Outcome) -> None:
    say(f"\n-- {o.label} results")
    each = ", ".join(f"{r.rate:,.0f}" for r in o.reads)
    say(f"  raw read                 {o.read.rate:>10,.0f} events/s  (best of runs: {each})")
    say(
        f"  read + decode            {o.decode.rate:>10,.0f} events/s  (for information; best "
        f"of {', '.join(f'{r.rate:,.0f}' for r in o.decodes)})"
    )
    say(
        f"  rebuild                  {o.rebuild_rate:>10,.0f} events/s per projection pass "
        f"(head {o.head:,} x {len(o.projections)} projections / {o.rebuild_seconds:.2f} s)"
    )
    say(
        f"  rebuild wall time        {o.rebuild_seconds:>10.2f} s  for all {len(o.projections)} "
        f"projections ({', '.join(o.projections)})"
    )
    if len(o.pass_ends) == len(o.projections):
        starts = [0.0, *o.pass_ends[:-1]]
        ends = [*o.pass_ends[:-1], o.rebuild_seconds]  # the last switch ends the rebuild
        parts = ", ".join(
            f"{name} {end - start:.2f} s ({o.head / (end - start):,.0f} events/s)"
            for name, start, end in zip(o.projections, starts, ends, strict=True)
        )
        say(f"  per pass (approximate: a pass's switch is counted in the next pass): {parts}")
    live = o.head / o.catch_up_seconds if o.catch_up_seconds else 0.0
    say(
        f"  live catch-up            {live:>10,.0f} events/s  (for information: one read per "
        "page, all projections applied)"
    )
    harness.say_ratio(
        o.label, "rebuild/raw read", o.ratio, harness.target_note(o.ratio, TARGET_RATIO)
    )


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.projections",
        description=(
            "Projection rebuild throughput (log events per second per projection pass) against "
            "the raw speed of reading the notification log, on a fresh SQLite file and a "
            "throwaway PostgreSQL database. Progress goes to stderr."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="admissions to fill")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    harness.add_postgres_url_argument(parser)
    parser.add_argument(
        "--windows",
        type=int,
        default=DEFAULT_WINDOWS,
        help="windows the batches go to, round robin (fewer if there are fewer batches)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        help=f"admissions per batch, 1..{MAX_BATCH}",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="workload seed")
    harness.add_profile_argument(
        parser,
        "after the measured run, rebuild once more under cProfile (not scored), write "
        "PATH.<backend>.pstats and print the top functions to stderr",
    )
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    if args.windows < 1:
        parser.error("--windows must be at least 1")
    if not 1 <= args.batch_size <= MAX_BATCH:
        parser.error(f"--batch-size must be 1..{MAX_BATCH}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n_batches = -(-args.events // args.batch_size)
    workload = Workload(args.events, args.batch_size, min(args.windows, n_batches), args.seed)
    shares = {"admitted": 0, "duplicates": 0, "quarantined": 0}
    for counts in workload.counts().values():
        for k, v in counts.items():
            shares[k] += v
    say(
        f"projections benchmark: {args.events:,} admissions in {n_batches:,} batches of "
        f"{args.batch_size}, round robin over {workload.windows} windows "
        f"({len(workload.closed)} closed at the end); new {shares['admitted']:,}, exact "
        f"duplicates {shares['duplicates']:,}, mismatches {shares['quarantined']:,} "
        f"(seed {args.seed})"
    )
    say(
        "raw read = select_notifications in pages of 1000 from the start to the head (best of "
        "one run before and one after the rebuild); rebuild = services.runner.rebuild() of every "
        "projection, scored as head x projections / wall seconds (log events per second per "
        "projection pass); RATIO = rebuild / raw read"
    )
    code, outcomes = harness.run_backends(
        args.backend,
        args.postgres_url,
        "bench-projections-",
        lambda databases: bench_backend(databases, workload, args),
        report,
    )
    if code:
        return code
    say("\n== summary")
    for o in outcomes:
        say(
            f"  {o.label:<8} raw read {o.read.rate:,.0f} events/s; rebuild {o.rebuild_rate:,.0f} "
            f"events/s per projection pass ({o.rebuild_seconds:.2f} s wall for "
            f"{len(o.projections)} projections); ratio {o.ratio:.2f} (target >= "
            f"{TARGET_RATIO}: {o.verdict})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
