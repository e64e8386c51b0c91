"""Cold starts and lost races on a long window (issue 10, ADR 0017): what a fresh process, a
restarted server and a command that lost a version race pay to load a window of a million
admissions, against the same for a new window, in the same run.

    .venv/bin/python -m benchmarks.cold                       # 1,000,000 admissions, PostgreSQL
    .venv/bin/python -m benchmarks.cold --events 100000 --backend sqlite

For each backend, on a database of its own (an SQLite file in a temporary directory; a
PostgreSQL database created for the run and dropped at the end):

* fill (not timed): ONE open window of `--events` admissions, all new identities, `prepare` +
  `Ledger.admit` in batches of 500 (the library path; snapshots every `--snapshot-interval`
  events, as the service writes them).
* fresh process: `ledger admit WINDOW one.jsonl` (the real command, a new process each time,
  one new event), into a new window and into the big one, twice each, alternating; the better
  of two each. Figures: seconds and the process's peak RSS. Targets: big - new <= 1 s, peak RSS
  of the big one < 300 MB.
* restarted server: `ledger serve` started anew, its first request one admission into the big
  window; then started anew again, its first request one admission into a new window. Target:
  the big window's first admission < 1 s.
* lost races: two ledgers (two caches, two connection pools, as two processes would have) in
  two threads, each admitting `--race-admissions` single new events into the big window as
  fast as it can. Every commit moves the window on, so the other's next command finds its
  cached window stale (it catches up by the events it lacks) or loses the race at commit (it
  re-runs: loads the snapshot and the events after it). Figures: re-runs, the slowest
  admission, p99, events read per load. Target: the slowest admission < 1 s.
* checks (void, exit 3, when one fails): every admission answered ADMITTED; the big window's
  admitted count is `--events` + what the run added.

The machine is noisy: compare the differences printed by one run, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks import harness
from benchmarks.harness import Databases, Void, note, say
from benchmarks.scrub import batches, migrate
from ledger.admissions import prepare
from ledger.infrastructure.signing import Ed25519Signer
from service.composition import build_ledger
from service.settings import Settings

DEFAULT_EVENTS = 1_000_000
DEFAULT_BATCH = 500
DEFAULT_RACE_ADMISSIONS = 200
DEFAULT_SEED = 20261129
BIG = "bench-cold-big"
TARGET_EXTRA_SECONDS = 1.0
TARGET_RSS_MB = 300.0
TARGET_FIRST_ADMISSION_SECONDS = 1.0
TARGET_SLOWEST_RACE_SECONDS = 1.0
ROOT = Path(__file__).resolve().parents[1]

# Runs a command and reports its wall time and peak RSS (this wrapper's only child).
_MEASURE = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "s = time.perf_counter() - t\n"
    "kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(s, kb, r.returncode)\n"
    "sys.stderr.write(r.stdout + r.stderr)\n"
)


@dataclass
class Outcome:
    label: str
    events: int
    fill_seconds: float = 0.0
    fresh_new: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    fresh_big: list[tuple[float, float]] = field(default_factory=list)
    first_big: float = 0.0
    first_new: float = 0.0
    reruns: int = 0
    race_latencies: list[float] = field(default_factory=list)
    events_read_per_load: float = 0.0
    loads: int = 0


def settings_for(databases: Databases, interval: int) -> Settings:
    key = databases.dir / "signing-key.pem"
    if not key.exists():
        Ed25519Signer.load_or_create(key)
    return Settings(database_url=databases.url, signing_key=str(key), snapshot_interval=interval)


def env_for(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return env | {
        "LEDGER_DATABASE_URL": settings.database_url,
        "LEDGER_SIGNING_KEY": settings.signing_key,
        "LEDGER_SNAPSHOT_INTERVAL": str(settings.snapshot_interval),
        "LEDGER_PUBLISHER": "embedded",
    }


def one_event(tag: str) -> dict[str, object]:
    return {"event_type": "order.created", "event_id": tag, "payload": {"n": tag}}


# --- the phases ---------------------------------------------------------------------------------


def fill(settings: Settings, args: argparse.Namespace, outcome: Outcome) -> None:
    ledger = build_ledger(settings)
    try:
        work = batches("big", args.events, DEFAULT_BATCH, args.seed)
        progress = harness.Tenths(len(work))
        t0 = time.perf_counter()
        for i, items in enumerate(work, start=1):
            ledger.admit(BIG, prepare(BIG, items))
            tenths = progress.crossed(i)
            if tenths is not None:
                elapsed = time.perf_counter() - t0
                done = min(i * DEFAULT_BATCH, args.events)
                note(
                    f"[{outcome.label}] fill: {tenths * 10:3d}% {done:,} admissions, "
                    f"{elapsed:.1f} s ({done / elapsed:,.0f}/s)"
                )
        outcome.fill_seconds = time.perf_counter() - t0
    finally:
        ledger.close()


def fresh_process(
    settings: Settings, window_id: str, tag: str, workdir: Path
) -> tuple[float, float]:
    path = workdir / f"{tag}.jsonl"
    path.write_text(json.dumps(one_event(tag)) + "\n")
    command = [sys.executable, "-m", "service.cli", "admit", window_id, str(path), "--quiet"]
    completed = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command],
        capture_output=True,
        text=True,
        env=env_for(settings),
        cwd=ROOT,
        timeout=3600,
    )
    seconds, kb, code = completed.stdout.split()
    if int(code) != 0 or "ADMITTED" not in completed.stderr:
        raise Void(f"ledger admit {window_id} failed:\n{completed.stderr[-2000:]}")
    return float(seconds), int(kb) / 1024


def first_admission_after_start(settings: Settings, window_id: str, tag: str) -> float:
    from tests.support.server import SERVE, running_server

    with running_server(
        settings.database_url,
        command=SERVE,
        extra_env={
            "LEDGER_SIGNING_KEY": settings.signing_key,
            "LEDGER_SNAPSHOT_INTERVAL": str(settings.snapshot_interval),
            "LEDGER_SCRUB_INTERVAL_SECONDS": "0",
        },
        start_timeout=harness.HEALTH_TIMEOUT_SECONDS,
    ) as server:
        t0 = time.perf_counter()
        answer = httpx.post(
            f"{server.url}/v1/windows/{window_id}/admissions",
            json={"events": [one_event(tag)]},
            timeout=3600,
        )
        seconds = time.perf_counter() - t0
    if answer.status_code != 200 or answer.json()["results"][0]["verdict"] != "ADMITTED":
        raise Void(f"first admission into {window_id}: {answer.status_code} {answer.text[:300]}")
    return seconds


def race(settings: Settings, args: argparse.Namespace, outcome: Outcome) -> None:
    ledgers = [build_ledger(settings), build_ledger(settings)]
    latencies: list[list[float]] = [[], []]
    failures: list[str] = []

    def admit_all(k: int) -> None:
        ledger = ledgers[k]
        for j in range(args.race_admissions):
            tag = f"race-{k}-{j}"
            t0 = time.perf_counter()
            (result,) = ledger.admit(BIG, prepare(BIG, [_item(tag)]))
            latencies[k].append(time.perf_counter() - t0)
            if result.verdict.value != "ADMITTED":
                failures.append(f"{tag}: {result.verdict}")

    try:
        for ledger in ledgers:  # both caches warm: what the race costs, not the first load
            ledger.uow.window(BIG)
        reads_before = sum(lg.loader.events_read for lg in ledgers)
        threads = [threading.Thread(target=admit_all, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise Void(f"race admissions not ADMITTED: {failures[:5]}")
        outcome.reruns = sum(lg.uow.reruns for lg in ledgers)
        outcome.race_latencies = latencies[0] + latencies[1]
        outcome.loads = outcome.reruns
        read = sum(lg.loader.events_read for lg in ledgers) - reads_before
        outcome.events_read_per_load = read / outcome.reruns if outcome.reruns else 0.0
        counts = ledgers[0].receipt(BIG)["counts"]
        # the fill, two fresh processes, the restarted server, the race
        expected = args.events + 2 + 1 + 2 * args.race_admissions
        if counts["admitted"] != expected:
            raise Void(f"the big window admitted {counts['admitted']:,}, not {expected:,}")
    finally:
        for ledger in ledgers:
            ledger.close()


def _item(tag: str) -> object:
    import msgspec

    from ledger.admissions import AdmissionIn

    return msgspec.convert(one_event(tag), AdmissionIn)


def bench_backend(databases: Databases, args: argparse.Namespace) -> Outcome:
    outcome = Outcome(databases.backend, args.events)
    if databases.backend == "postgres":
        note(f"[postgres] {databases.describe_postgres()}")
    settings = settings_for(databases, args.snapshot_interval)
    migrate(settings)
    fill(settings, args, outcome)
    note(f"[{outcome.label}] filled {args.events:,} admissions in {outcome.fill_seconds:.1f} s")
    for n in (1, 2):
        outcome.fresh_new.append(
            fresh_process(settings, f"bench-cold-new-{n}", f"n{n}", databases.dir)
        )
        outcome.fresh_big.append(fresh_process(settings, BIG, f"fresh-{n}", databases.dir))
    outcome.first_big = first_admission_after_start(settings, BIG, "after-restart")
    outcome.first_new = first_admission_after_start(settings, "bench-cold-new-3", "n3")
    note(f"[{outcome.label}] restarted servers answered; racing ...")
    race(settings, args, outcome)
    return outcome


# --- report -----------------------------------------------------------------------------------


def report(o: Outcome) -> None:
    new_s, new_mb = min(o.fresh_new)
    big_s = min(o.fresh_big)[0]
    say(f"\n== {o.label}: one window of {o.events:,} admissions (filled in {o.fill_seconds:.1f} s)")
    say(
        f"FRESH {o.label} ledger admit, new window: {new_s:.2f} s, peak RSS {new_mb:.0f} MB; "
        f"big window: {big_s:.2f} s, peak RSS {max(mb for _, mb in o.fresh_big):.0f} MB"
    )
    extra = big_s - new_s
    say(
        f"TARGET {o.label} fresh process big - new {extra:+.2f} s <= {TARGET_EXTRA_SECONDS:g} s: "
        f"{'PASS' if extra <= TARGET_EXTRA_SECONDS else 'MISS'}"
    )
    peak = max(mb for _, mb in o.fresh_big)
    say(
        f"TARGET {o.label} fresh process peak RSS {peak:.0f} MB < {TARGET_RSS_MB:g} MB: "
        f"{'PASS' if peak < TARGET_RSS_MB else 'MISS'}"
    )
    say(
        f"RESTART {o.label} first admission after start: big window {o.first_big * 1000:.0f} ms, "
        f"new window {o.first_new * 1000:.0f} ms"
    )
    say(
        f"TARGET {o.label} restarted server first admission into the big window "
        f"{o.first_big:.2f} s < {TARGET_FIRST_ADMISSION_SECONDS:g} s: "
        f"{'PASS' if o.first_big < TARGET_FIRST_ADMISSION_SECONDS else 'MISS'}"
    )
    lat = sorted(o.race_latencies)
    p99 = lat[max(0, int(len(lat) * 0.99) - 1)]
    say(
        f"RACE {o.label} {len(lat)} admissions by two ledgers: {o.reruns} re-runs after a lost "
        f"race, events read per re-load {o.events_read_per_load:.0f}, median "
        f"{statistics.median(lat) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, slowest "
        f"{lat[-1] * 1000:.1f} ms"
    )
    say(
        f"TARGET {o.label} slowest admission in the race {lat[-1]:.2f} s < "
        f"{TARGET_SLOWEST_RACE_SECONDS:g} s: "
        f"{'PASS' if lat[-1] < TARGET_SLOWEST_RACE_SECONDS else 'MISS'}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cold",
        description="Cold loads and lost races on one long window against a new window.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="postgres")
    harness.add_postgres_url_argument(parser)
    parser.add_argument("--snapshot-interval", type=int, default=500)
    parser.add_argument("--race-admissions", type=int, default=DEFAULT_RACE_ADMISSIONS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    if args.events < 1 or args.race_admissions < 1:
        parser.error("--events and --race-admissions must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    say(
        f"cold benchmark: one window of {args.events:,} admissions, snapshots every "
        f"{args.snapshot_interval} events; machine: {os.cpu_count()} CPUs, load average "
        f"{harness.load_average()}"
    )
    code, _ = harness.run_backends(
        args.backend,
        args.postgres_url,
        "bench-cold-",
        lambda databases: bench_backend(databases, args),
        report,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
