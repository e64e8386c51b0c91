"""Scrub cost (contract s.9): how fast a closed window's history is checked, and what a running
scrub costs the service's admissions, on SQLite and PostgreSQL.

    .venv/bin/python -m benchmarks.scrub                              # 1,000,000 events, both
    .venv/bin/python -m benchmarks.scrub --events 200000 --backend postgres

For each backend, in one run and one process, on a database of its own (an SQLite file in a
temporary directory; a PostgreSQL database created for the run and dropped at the end), with a
signing key of the run's own:

* fill (not timed): ONE window of `--events` admissions, all new identities (payloads of six
  fields, about 110 bytes in canonical form), `prepare` + `Ledger.admit` in batches of 500; then
  closed and signed as the service closes it (`Ledger.close_window`, `Evidence.seal`); then the
  read side is brought up to the head (the check holds the admitted read model to the history
  too). The window's history is `--events` + 2 events (WindowOpened, WindowClosed).
* verify throughput, events/s = history events / seconds:
    raw read        the window's stored events read page by page (`HistoryReader.stored_events`,
                    no decoding): the floor of any pass over the history;
    check           `Evidence.check`: the pass `verify`, the check at start and the scrub make
                    (read, decode, recompute every digest, hold it to the signed receipt; then
                    every admitted read-model row held to its stored event);
    ledger verify   the real command (`python -m service.cli verify WINDOW`) as a subprocess,
                    process start included.
  Order: raw read, check, ledger verify, check, raw read; raw read and check scored by the
  better of their two runs. RATIO check/raw read is for information.
* admissions with and without a scrub running: `--admissions` new identities (default 50,000)
  in batches of 500 through `Services.admit` (the service's admission path, without HTTP), each
  run into a window of its own, timed per batch (workload generation untimed); the projection
  follower runs in neither.
    without   nothing else runs;
    with      the service's scrub thread (`Evidence.start`, as `ledger serve` starts it) checking
              the big closed window again and again (`--scrub-interval` seconds between passes,
              default 0.001: back to back, the worst case).
  Order: without, with, with, without; each scored by the better of its two runs. The figure is
  RATIO with/without (admissions/s); the issue's target is >= 0.8.
* checks (the figures are void, exit 3, if one fails): every check finds the history whole
  (events, head = the signed receipt's); `ledger verify` exits 0 naming the same head; every
  admission is ADMITTED; the scrub did check the big window during every "with" run.

The machine is noisy: compare the ratios printed by one run, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.harness import Databases, Timed, Void, note, say
from ledger.admissions import MAX_BATCH, AdmissionIn, prepare
from ledger.infrastructure.signing import Ed25519Signer
from projections.migrate import upgrade
from projections.store import create_read_store
from service.composition import Services, build_services
from service.settings import Settings

DEFAULT_EVENTS = 1_000_000
DEFAULT_ADMISSIONS = 50_000
DEFAULT_BATCH = 500
DEFAULT_SCRUB_INTERVAL = 0.001
DEFAULT_SEED = 20261129
TARGET_RATIO = 0.8  # admissions/s with a scrub running / without (the target)
BIG_WINDOW = "bench-scrub-closed"
CURRENCIES = ("EUR", "USD", "GBP", "CHF")

# --- workload ---------------------------------------------------------------------------------


def order_item(tag: str, j: int, seed: int) -> AdmissionIn:
    h = ((j + 1) * 2654435761 + seed) & 0xFFFFFFFF
    return AdmissionIn(
        event_type="order.created",
        event_id=f"{tag}-{j:08d}",
        payload={
            "order_id": f"ord-{j:08d}",
            "customer": f"cust-{(h >> 3) % 50000:05d}",
            "amount_cents": h % 100000,
            "currency": CURRENCIES[(h >> 7) % len(CURRENCIES)],
            "sku": f"SKU-{(h >> 11) % 10000:04d}",
            "qty": 1 + (h >> 17) % 5,
        },
    )


def batches(tag: str, events: int, batch_size: int, seed: int) -> list[list[AdmissionIn]]:
    return [
        [order_item(tag, j, seed) for j in range(start, min(start + batch_size, events))]
        for start in range(0, events, batch_size)
    ]


# --- the services of the run ------------------------------------------------------------------


def settings_for(databases: Databases, scrub_interval: float = 3600.0) -> Settings:
    key = databases.dir / "signing-key.pem"
    if not key.exists():
        Ed25519Signer.load_or_create(key)
    return Settings(
        database_url=databases.url, signing_key=str(key), scrub_interval_seconds=scrub_interval
    )


def migrate(settings: Settings) -> None:
    store = create_read_store(settings.database_url)
    try:
        upgrade(store)
    finally:
        store.dispose()


def fill(label: str, services: Services, args: argparse.Namespace) -> dict[str, Any]:
    """The big window, admitted and closed; returns its signed receipt."""
    work = batches("big", args.events, args.batch_size, args.seed)
    progress = harness.Tenths(len(work))
    t0 = time.perf_counter()
    for i, items in enumerate(work, start=1):
        services.ledger.admit(BIG_WINDOW, prepare(BIG_WINDOW, items))
        tenths = progress.crossed(i)
        if tenths is not None:
            elapsed = time.perf_counter() - t0
            done = min(i * args.batch_size, args.events)
            note(
                f"[{label}] fill: {tenths * 10:3d}% {done:,}/{args.events:,} admissions, "
                f"{elapsed:.1f} s ({done / elapsed:,.0f} admissions/s)"
            )
    signed = services.evidence.seal(BIG_WINDOW, services.ledger.close_window(BIG_WINDOW))
    note(f"[{label}] filled and closed in {time.perf_counter() - t0:.1f} s; read side ...")
    t0 = time.perf_counter()
    services.runner.run_until_caught_up()  # the check holds the admitted read model too
    receipt = services.read.receipt(BIG_WINDOW)
    if receipt is None or receipt["counts"]["admitted"] != args.events:
        raise Void(f"the read side does not hold the {args.events:,} admitted events: {receipt}")
    note(f"[{label}] read side caught up in {time.perf_counter() - t0:.1f} s")
    return signed


# --- verify throughput ------------------------------------------------------------------------


def raw_read(services: Services) -> Timed:
    def read() -> int:
        return sum(1 for _ in services.ledger.reader.stored_events(BIG_WINDOW))

    return Timed(*harness.timed(read))


def check(services: Services, signed: dict[str, Any]) -> Timed:
    (verification, reasons), seconds = harness.timed(
        lambda: services.evidence.check(BIG_WINDOW, "benchmark")
    )
    if reasons or verification.head != signed["chain_head"]:
        raise Void(f"the check found the untouched window broken: {reasons}")
    if verification.events != signed["events"]:
        raise Void(f"the check saw {verification.events} events, not {signed['events']}")
    return Timed(verification.events, seconds)


def ledger_verify(settings: Settings, signed: dict[str, Any]) -> Timed:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env |= {
        "LEDGER_DATABASE_URL": settings.database_url,
        "LEDGER_SIGNING_KEY": settings.signing_key,
        "LEDGER_PUBLISHER": "embedded",
    }
    completed, seconds = harness.timed(
        lambda: subprocess.run(
            [sys.executable, "-m", "service.cli", "verify", BIG_WINDOW],
            capture_output=True,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parents[1],
            timeout=3600,
        )
    )
    if completed.returncode != 0:
        raise Void(f"ledger verify failed:\n{completed.stdout}{completed.stderr}")
    result = json.loads(completed.stdout)
    if result["head"] != signed["chain_head"] or result["events"] != signed["events"]:
        raise Void(f"ledger verify saw another history: {result}")
    return Timed(result["events"], seconds)


# --- admissions with and without a scrub -------------------------------------------------------


@dataclass
class AdmissionRun:
    name: str
    admissions: int = 0
    seconds: float = 0.0
    passes_started: int = 0
    passes_finished: int = 0

    @property
    def rate(self) -> float:
        return harness.per_second(self.admissions, self.seconds)


class CountedChecks:
    """Counts the scrub's checks of the big window (started, finished) around Evidence.check."""

    def __init__(self, services: Services) -> None:
        self.started = 0
        self.finished = 0
        self.lock = threading.Lock()
        inner = services.evidence.check

        def counted(window_id: str, source: str, *more: Any) -> Any:
            with self.lock:
                self.started += 1
            try:
                return inner(window_id, source, *more)
            finally:
                with self.lock:
                    self.finished += 1

        services.evidence.check = counted  # type: ignore[method-assign]


def admit_run(
    label: str,
    databases: Databases,
    args: argparse.Namespace,
    name: str,
    window_id: str,
    scrubbing: bool,
) -> AdmissionRun:
    work = batches(window_id, args.admissions, args.batch_size, args.seed)
    prepared = [prepare(window_id, items) for items in work]  # not timed
    services = build_services(settings_for(databases, args.scrub_interval))
    run = AdmissionRun(name)
    try:
        counted = CountedChecks(services)
        if scrubbing:
            services.evidence.start(args.scrub_interval)  # the service's scrub thread
            deadline = time.monotonic() + 60
            while counted.started == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # the scrub is checking the big window when admissions start
        progress = harness.Tenths(len(prepared))
        for i, batch in enumerate(prepared, start=1):
            results, seconds = harness.timed(partial(services.admit, window_id, batch))
            run.seconds += seconds
            run.admissions += len(results)
            if any(r.verdict != "ADMITTED" for r in results):
                raise Void(f"{name}: an admission was not ADMITTED")
            tenths = progress.crossed(i)
            if tenths is not None:
                scrub = (
                    f"; scrub checks started {counted.started}, finished {counted.finished}"
                    if scrubbing
                    else ""
                )
                note(
                    f"[{label}] {name}: {tenths * 10:3d}% {run.admissions:,} admissions, "
                    f"{run.rate:,.0f} admissions/s so far{scrub}"
                )
        run.passes_started, run.passes_finished = counted.started, counted.finished
    finally:
        services.close()
    if scrubbing and run.passes_started == 0:
        raise Void(f"{name}: the scrub never checked the big window during the run")
    return run


# --- one backend --------------------------------------------------------------------------------


@dataclass
class Outcome:
    label: str
    events: int
    reads: list[Timed] = field(default_factory=list)
    checks: list[Timed] = field(default_factory=list)
    cli: Timed | None = None
    without: list[AdmissionRun] = field(default_factory=list)
    with_scrub: list[AdmissionRun] = field(default_factory=list)
    peak_rss: float = 0.0

    @property
    def read(self) -> Timed:
        return harness.best(self.reads)

    @property
    def check(self) -> Timed:
        return harness.best(self.checks)

    @property
    def ratio(self) -> float:
        return harness.ratio(harness.best(self.with_scrub).rate, harness.best(self.without).rate)


def describe(databases: Databases) -> str:
    if databases.backend == "postgres":
        return databases.describe_postgres()
    return f"SQLite, file {databases.dir / 'ledger.db'} (WAL; events and read models together)"


def bench_backend(databases: Databases, args: argparse.Namespace) -> Outcome:
    label = databases.backend
    say(f"\n== {label}: {describe(databases)}")
    settings = settings_for(databases)
    migrate(settings)
    services = build_services(settings)
    try:
        note(f"[{label}] filling one window with {args.events:,} admissions ...")
        signed = fill(label, services, args)
        outcome = Outcome(label, int(signed["events"]))
        say(f"  window {BIG_WINDOW}: {outcome.events:,} events in its history, closed and signed")
        for step in ("raw read", "check", "ledger verify", "check", "raw read"):
            note(f"[{label}] {step} ...")
            if step == "raw read":
                timed = raw_read(services)
                if timed.events != outcome.events:
                    raise Void(f"raw read saw {timed.events} events, not {outcome.events}")
                outcome.reads.append(timed)
            elif step == "check":
                timed = check(services, signed)
                outcome.checks.append(timed)
            else:
                timed = outcome.cli = ledger_verify(settings, signed)
            say(f"  run: {step:<14} {timed.rate:>10,.0f} events/s ({timed.seconds:.2f} s)")
        outcome.peak_rss = harness.peak_rss_mb()
    finally:
        services.close()
    for n, (name, scrubbing) in enumerate(
        [("without", False), ("with scrub", True), ("with scrub", True), ("without", False)],
        start=1,
    ):
        note(f"[{label}] admissions {name} ...")
        run = admit_run(label, databases, args, name, f"bench-admit-{n}", scrubbing)
        (outcome.with_scrub if scrubbing else outcome.without).append(run)
        scrub_note = (
            f"; scrub checks of the big window started {run.passes_started}, finished "
            f"{run.passes_finished}"
            if scrubbing
            else ""
        )
        say(
            f"  run: admissions {name:<10} {run.rate:>10,.0f} admissions/s "
            f"({run.admissions:,} in {run.seconds:.2f} s){scrub_note}"
        )
    return outcome


def report(o: Outcome) -> None:
    say(f"\n-- {o.label} results")
    say(
        f"  raw read                 {o.read.rate:>10,.0f} events/s  (best of "
        f"{', '.join(f'{r.rate:,.0f}' for r in o.reads)})"
    )
    say(
        f"VERIFY {o.label} check: {o.check.rate:,.0f} events/s ({o.events:,} events in "
        f"{o.check.seconds:.2f} s; best of {', '.join(f'{r.rate:,.0f}' for r in o.checks)})"
    )
    if o.cli is not None:
        say(
            f"VERIFY {o.label} ledger verify: {o.cli.rate:,.0f} events/s ({o.events:,} events in "
            f"{o.cli.seconds:.2f} s, process start included)"
        )
    harness.say_ratio(
        o.label, "check/raw read", harness.ratio(o.check.rate, o.read.rate), "(for information)"
    )
    without, with_scrub = harness.best(o.without), harness.best(o.with_scrub)
    say(
        f"  admissions without scrub {without.rate:>10,.0f} admissions/s  (best of "
        f"{', '.join(f'{r.rate:,.0f}' for r in o.without)})"
    )
    say(
        f"  admissions with scrub    {with_scrub.rate:>10,.0f} admissions/s  (best of "
        f"{', '.join(f'{r.rate:,.0f}' for r in o.with_scrub)})"
    )
    harness.say_ratio(
        o.label,
        "admissions with scrub/without",
        o.ratio,
        harness.target_note(o.ratio, TARGET_RATIO),
    )
    say(f"MEMORY {o.label}: peak RSS {o.peak_rss:.1f} MB after the checks")


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scrub",
        description=(
            "Verify throughput (events/s) of Evidence.check and `ledger verify` on one big "
            "closed window, and admission throughput with the service's scrub running against "
            "without it, on a fresh SQLite file and a throwaway PostgreSQL database. Progress "
            "goes to stderr."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--events", type=int, default=DEFAULT_EVENTS, help="admissions in the closed window"
    )
    parser.add_argument(
        "--admissions",
        type=int,
        default=DEFAULT_ADMISSIONS,
        help="admissions per run of the with/without-scrub comparison",
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    harness.add_postgres_url_argument(parser)
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH, help=f"events per batch, 1..{MAX_BATCH}"
    )
    parser.add_argument(
        "--scrub-interval",
        type=float,
        default=DEFAULT_SCRUB_INTERVAL,
        help="seconds between scrub passes in the 'with' runs (> 0)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="workload seed")
    args = parser.parse_args(argv)
    if args.events < 1 or args.admissions < 1:
        parser.error("--events and --admissions must be at least 1")
    if not 1 <= args.batch_size <= MAX_BATCH:
        parser.error(f"--batch-size must be 1..{MAX_BATCH}")
    if args.scrub_interval <= 0:
        parser.error("--scrub-interval must be > 0 (0 would scrub once, at start)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    say(
        f"scrub benchmark: one closed window of {args.events:,} admissions (+ WindowOpened and "
        f"WindowClosed); admissions {args.admissions:,} per run in batches of {args.batch_size} "
        f"(seed {args.seed}); scrub interval in the 'with' runs {args.scrub_interval:g} s"
    )
    say(
        "verify events/s = history events / seconds of one pass; check = Evidence.check (what "
        "verify, the check at start and the scrub run); RATIO admissions with scrub/without = "
        "admissions/s with the service's scrub thread running / admissions/s without it"
    )
    say(f"machine: {os.cpu_count()} CPUs, load average at start {harness.load_average()}")
    code, outcomes = harness.run_backends(
        args.backend,
        args.postgres_url,
        "bench-scrub-",
        lambda databases: bench_backend(databases, args),
        report,
    )
    if code:
        return code
    say(f"\n== summary (load average at end {harness.load_average()}; compare ratios)")
    for o in outcomes:
        say(
            f"  {o.label:<8} check {o.check.rate:,.0f} events/s on {o.events:,} events; "
            f"admissions with scrub/without {o.ratio:.2f} (target >= {TARGET_RATIO}: "
            f"{harness.verdict(o.ratio, TARGET_RATIO)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
