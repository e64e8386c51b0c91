"""Admission throughput: the ledger against a hand-written dedupe, on SQLite and PostgreSQL.

    .venv/bin/python -m benchmarks.admission                      # 50,000 events, both backends
    .venv/bin/python -m benchmarks.admission --backend postgres --long  # 1,000,000 events
    .venv/bin/python -m benchmarks.admission --publisher nats     # the ledger with NATS JetStream
    .venv/bin/python -m benchmarks.admission --cli                # `ledger admit`, 1,000,000 lines

For each backend, in one run and one process:

* a deterministic workload of admissions in batches of 500 into ONE window: about 89% new
  identities, 10% exact duplicates of an earlier identity, 1% mismatches (an earlier identity
  with a different payload); payloads of six fields, about 110 bytes in canonical form. Every
  contender gets the very same list (it is regenerated from the seed, outside the timed code).
* contenders:
    ledger       `PreparedOnUse` + `Ledger.admit` per batch (library level, no HTTP): `prepare`'s
                 work, the payloads' part of it done while the ledger looks up the batch's
                 identities (ADR 0040);
    baseline(a)  "same work": `prepare` (validate, identity, payload hash) + one transaction per
                 batch of `INSERT ... ON CONFLICT DO NOTHING` (psycopg / sqlite3 executemany);
    baseline(b)  "raw insert": the same insert, identities and hashes computed outside the timer.
* order: baseline(a), baseline(b), ledger, ledger, baseline(b), baseline(a); every contender is
  scored by the better of its two runs, so warm-up (first run) favours no one. The ledger's
  second run writes to a database of its own, as each baseline run writes to a table of its own.
  (`--long` and `--profile` run the ledger once.)
* events/s is events / (sum of the timed sections of every batch); generating the workload is
  never timed. The machine is noisy: compare the ratios printed by one run, not absolute figures.

Only the ratios are meant to be compared; the target is ledger/baseline(a) >= 0.8 on PostgreSQL
(issue 10; issue 2 had set 0.6), and last-10%/first-10% throughput >= 0.8 within the window
(flatness).

`--publisher nats` (or `--nats`) measures the ledger with NATS JetStream as its bus instead of the
hand-written baselines; `--publisher both` measures everything. The script starts a nats-server
of its own (JetStream, file store in a temporary directory, a free 127.0.0.1 port) and kills it at
the end. Contenders, each on a fresh stream (own name and subject prefix, duplicate window 24 h,
file storage) and the ledgers each on a fresh database:

    ledger        the embedded-publisher ledger, as above (the reference figure);
    ledger+nats   the same, built by `service.composition.build_ledger` with LEDGER_PUBLISHER
                  set to the server: every batch's new identities are published (concurrently)
                  before the batch is recorded;
    raw jetstream for each batch, exactly the messages the ledger publishes for it (the batch's
                  NEW identities, the ledger's JSON body) sent with nats-py
                  `js.publish(subject, body, headers={"Nats-Msg-Id": identity})`, all of a batch
                  at once with `asyncio.gather`, on an event loop in the main thread; bodies are
                  built outside the timer. Scored as messages/s and as admissions/s (admissions
                  of the batch / time to publish its new messages); best of two runs.

order: raw jetstream, ledger, ledger+nats, raw jetstream (with `both`: baseline(a), baseline(b),
those four, baseline(b), baseline(a)). The ratio printed is ledger+nats admissions/s divided by
raw-jetstream admissions/s over the same batches; the target is >= 0.5 (the ledger may cost at
most as much time again as publishing alone). `--ledger-only` with nats runs the two ledgers only.

`--cli` measures the command line replay instead of the hand-written baselines: the workload is
written to a JSON-lines file (one admission object a line, as a producer writes it; not timed),
and `ledger admit WINDOW FILE` (the real command, `python -m service.cli`, as a subprocess with
its progress bar, on a fresh database, LEDGER_SIGNING_KEY set to a key made beforehand) is
timed from start to exit: interpreter start, imports and schema creation included. The
library-level ledger runs the same workload on a fresh window of its own. Order: ledger admit,
ledger, ledger, ledger admit; each scored by the better of its two runs. The size is --events,
1,000,000 unless given. The ratio printed is ledger-admit events/s divided by the ledger's; the
target is >= 0.8 (issue 10).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import nats
import psycopg
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from psycopg import sql

from benchmarks import harness
from benchmarks.harness import Databases, Void, note, say
from ledger.admissions import MAX_BATCH, Admission, AdmissionIn, PreparedOnUse, prepare
from ledger.application import Ledger
from ledger.infrastructure.nats import NatsSettings, subject_token
from ledger.infrastructure.signing import Ed25519Signer
from ledger.ports import InspectableBus
from service.cli.admit import CLI_BATCH
from service.composition import build_ledger
from service.settings import Settings

if TYPE_CHECKING:
    from tests.support.nats import NatsServer

DEFAULT_EVENTS = 50_000
LONG_EVENTS = 1_000_000
CLI_EVENTS = 1_000_000  # the --cli default: the file
DEFAULT_BATCH = 500
DEFAULT_SEED = 20261125
DUPLICATE_SHARE = 0.10
MISMATCH_SHARE = 0.01
WINDOW_ID = "bench-window-1"
TARGET_RATIO = 0.8  # ledger / baseline(a), PostgreSQL (issue 10 raised issue 2's 0.6)
TARGET_FLATNESS = 0.8  # last 10% / first 10% throughput
TARGET_NATS_RATIO = 0.5  # ledger+nats / raw jetstream, admissions/s over the same batches
TARGET_CLI_RATIO = 0.8  # `ledger admit FILE` / the library-level ledger, events/s (issue 10)
ROOT = Path(__file__).resolve().parents[1]
EDGE_SHARE = 0.10
EVENT_TYPES = ("order.created", "order.paid", "order.shipped")
CURRENCIES = ("EUR", "USD", "GBP", "CHF")

_json = msgspec.json.Encoder()


# --- workload ---------------------------------------------------------------------------------


def _payload(j: int, seed: int, revision: int = 0) -> dict[str, Any]:
    """The payload of new event number j (revision > 0: a different payload, same identity)."""
    h = ((j + 1) * 2654435761 + seed) & 0xFFFFFFFF
    payload: dict[str, Any] = {
        "order_id": f"ord-{j:08d}",
        "customer": f"cust-{(h >> 3) % 50000:05d}",
        "amount_cents": h % 100000 + revision,
        "currency": CURRENCIES[(h >> 7) % len(CURRENCIES)],
        "sku": f"SKU-{(h >> 11) % 10000:04d}",
        "qty": 1 + (h >> 17) % 5,
    }
    return payload


def _item(j: int, seed: int, revision: int = 0) -> AdmissionIn:
    return AdmissionIn(
        event_type=EVENT_TYPES[j % len(EVENT_TYPES)],
        event_id=f"evt-{j:08d}",
        payload=_payload(j, seed, revision),
    )


@dataclass(frozen=True)
class Workload:
    events: int
    batch_size: int
    seed: int

    def _plan(self) -> Iterator[tuple[str, int, int]]:
        """(kind, j, position) for every item; the same sequence on every call."""
        rng = random.Random(self.seed)
        new = 0
        for position in range(self.events):
            r = rng.random()
            if new == 0 or r >= DUPLICATE_SHARE + MISMATCH_SHARE:
                yield "new", new, position
                new += 1
            elif r < DUPLICATE_SHARE:
                yield "duplicate", rng.randrange(new), position
            else:
                yield "mismatch", rng.randrange(new), position

    def batches(self) -> Iterator[list[AdmissionIn]]:
        batch: list[AdmissionIn] = []
        for kind, j, position in self._plan():
            # A mismatch's payload differs from the original (amount + 1..7).
            revision = 1 + position % 7 if kind == "mismatch" else 0
            batch.append(_item(j, self.seed, revision))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def counts(self) -> dict[str, int]:
        counts = {"new": 0, "duplicate": 0, "mismatch": 0}
        for kind, _, _ in self._plan():
            counts[kind] += 1
        return counts

    @property
    def n_batches(self) -> int:
        return -(-self.events // self.batch_size)


# --- driving one contender --------------------------------------------------------------------


@dataclass
class Run:
    name: str
    batch_events: list[int] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)
    peak_rss_before: float = 0.0
    peak_rss_after: float = 0.0
    rss_samples: list[tuple[int, float]] = field(default_factory=list)  # (events, MB)
    partial: bool = False
    messages: int = 0  # messages published to JetStream (the NATS contenders)

    @property
    def events(self) -> int:
        return sum(self.batch_events)

    @property
    def seconds(self) -> float:
        return sum(self.batch_seconds)

    @property
    def rate(self) -> float:
        return harness.per_second(self.events, self.seconds)

    @property
    def message_rate(self) -> float:
        return harness.per_second(self.messages, self.seconds)

    def edge(self, last: bool) -> tuple[int, float]:
        """Events and timed seconds of the first (or last) 10% of the batches."""
        k = max(1, round(len(self.batch_seconds) * EDGE_SHARE))
        sl = slice(-k, None) if last else slice(0, k)
        return sum(self.batch_events[sl]), sum(self.batch_seconds[sl])

    def edge_rate(self, last: bool) -> float:
        return harness.per_second(*self.edge(last))

    @property
    def flatness(self) -> float:
        return harness.ratio(self.edge_rate(last=True), self.edge_rate(last=False))

    @property
    def median_flatness(self) -> float:
        """The same ratio from the median batch of each edge: less swayed by a noisy second."""
        k = max(1, round(len(self.batch_seconds) * EDGE_SHARE))
        first = statistics.median(self.batch_seconds[:k])
        last = statistics.median(self.batch_seconds[-k:])
        return harness.ratio(first, last)


Step = Callable[[list[AdmissionIn]], float]  # runs one batch, returns its timed seconds


def drive(label: str, name: str, workload: Workload, step: Step, time_limit: float) -> Run:
    run = Run(name)
    run.peak_rss_before = harness.peak_rss_mb()
    total = workload.n_batches
    progress = harness.Tenths(total)
    started = time.perf_counter()
    for i, items in enumerate(workload.batches(), start=1):
        run.batch_seconds.append(step(items))
        run.batch_events.append(len(items))
        tenths = progress.crossed(i)
        if tenths is not None:
            rss = harness.current_rss_mb()
            if rss is not None:
                run.rss_samples.append((run.events, rss))
            note(
                f"[{label}] {name}: {tenths * 10:3d}% {run.events:,}/{workload.events:,} "
                f"events, {run.seconds:.1f} s timed, {run.rate:,.0f} events/s so far"
                + (f", RSS {rss:.0f} MB" if rss is not None else "")
            )
        if time.perf_counter() - started > time_limit and i < total:
            run.partial = True
            note(f"[{label}] {name}: time limit of {time_limit:.0f} s reached; stopping here")
            break
    run.peak_rss_after = harness.peak_rss_mb()
    return run


def rows_of(prepared: list[Admission]) -> list[tuple[str, str, str, str]]:
    return [
        (a.window_id, a.identity, a.payload_hash, _json.encode(a.payload).decode())
        for a in prepared
    ]


def baseline_steps(insert: Callable[[list[tuple[str, str, str, str]]], None]) -> dict[str, Step]:
    def same_work(items: list[AdmissionIn]) -> float:
        return harness.timed(lambda: insert(rows_of(prepare(WINDOW_ID, items))))[1]

    def raw_insert(items: list[AdmissionIn]) -> float:
        rows = rows_of(prepare(WINDOW_ID, items))  # not timed
        return harness.timed(lambda: insert(rows))[1]

    return {"a": same_work, "b": raw_insert}


def ledger_step(app: Ledger) -> Step:
    def step(items: list[AdmissionIn]) -> float:
        return harness.timed(lambda: app.admit(WINDOW_ID, PreparedOnUse(WINDOW_ID, items)))[1]

    return step


# --- backends ---------------------------------------------------------------------------------


class Backend:
    """The ledger's database, a fresh one per further ledger, and the hand-written baselines."""

    def __init__(self, databases: Databases) -> None:
        self.databases = databases
        self.label = databases.backend
        self._runs = 0

    def describe(self) -> str:
        raise NotImplementedError

    def ledger(self, url: str | None = None) -> Ledger:
        """The embedded-publisher ledger on its database (or on `url`), built as the service
        builds it."""
        return build_ledger(Settings(database_url=url or self.databases.url))

    def fresh_database_url(self, tag: str) -> str:
        """A database no other contender has used (for a second ledger)."""
        return self.databases.fresh(f"ledger_{tag}")

    def baseline(self, variant: str, workload: Workload, time_limit: float) -> Run:
        self._runs += 1
        run, stored = self.dedupe(f"baseline_{variant}_{self._runs}", variant, workload, time_limit)
        check_baseline(run, stored, workload)
        return run

    def dedupe(
        self, name: str, variant: str, workload: Workload, time_limit: float
    ) -> tuple[Run, int]:
        """Drive the baseline on a dedupe table of its own; the run and the rows it stored."""
        raise NotImplementedError


class SQLiteBackend(Backend):
    def describe(self) -> str:
        return (
            f"SQLite {sqlite3.sqlite_version}, files in {self.databases.dir} (WAL journal, "
            "default synchronous, for the ledger and the baseline alike)"
        )

    def dedupe(
        self, name: str, variant: str, workload: Workload, time_limit: float
    ) -> tuple[Run, int]:
        path = self.databases.dir / f"{name}.db"
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE dedupe (window_id TEXT NOT NULL, identity TEXT PRIMARY KEY, "
                "payload_hash TEXT NOT NULL, payload TEXT NOT NULL)"
            )
            insert_sql = (
                "INSERT INTO dedupe (window_id, identity, payload_hash, payload) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
            )

            def insert(rows: list[tuple[str, str, str, str]]) -> None:
                conn.execute("BEGIN")
                conn.executemany(insert_sql, rows)
                conn.execute("COMMIT")

            run = drive(
                self.label, NAMES[variant], workload, baseline_steps(insert)[variant], time_limit
            )
            (stored,) = conn.execute("SELECT COUNT(*) FROM dedupe").fetchone()
        finally:
            conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return run, int(stored)


class PostgresBackend(Backend):
    def describe(self) -> str:
        return self.databases.describe_postgres()

    def dedupe(
        self, name: str, variant: str, workload: Workload, time_limit: float
    ) -> tuple[Run, int]:
        table = sql.Identifier(name)
        with psycopg.connect(self.databases.url) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (window_id text NOT NULL, identity text PRIMARY KEY, "
                    "payload_hash text NOT NULL, payload json NOT NULL)"
                ).format(table)
            )
            conn.commit()
            insert_sql = sql.SQL(
                "INSERT INTO {} (window_id, identity, payload_hash, payload) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"
            ).format(table)
            cur = conn.cursor()

            def insert(rows: list[tuple[str, str, str, str]]) -> None:
                cur.executemany(insert_sql, rows)  # one transaction per batch
                conn.commit()

            run = drive(
                self.label, NAMES[variant], workload, baseline_steps(insert)[variant], time_limit
            )
            stored = conn.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(table)).fetchone()
            conn.execute(sql.SQL("DROP TABLE {}").format(table))
            conn.commit()
        return run, stored[0] if stored else -1


def backend_for(databases: Databases) -> Backend:
    return SQLiteBackend(databases) if databases.backend == "sqlite" else PostgresBackend(databases)


NAMES = {
    "a": "baseline(a) same work",
    "b": "baseline(b) raw insert",
    "ledger": "ledger",
    "nats": "ledger+nats",
    "raw": "raw jetstream",
    "cli": "ledger admit",
}


def check_baseline(run: Run, stored: int, workload: Workload) -> None:
    if run.partial:
        return
    expected = workload.counts()["new"]
    if stored != expected:
        raise Void(f"{run.name} stored {stored} identities, expected {expected}")


def check_ledger(app: Ledger, run: Run, workload: Workload) -> dict[str, int]:
    counts = app.get_window(WINDOW_ID).counts()
    if run.partial:
        return counts
    expected = workload.counts()
    got = (counts["admitted"], counts["duplicates"], counts["quarantined"])
    want = (expected["new"], expected["duplicate"], expected["mismatch"])
    if got != want:
        raise Void(f"ledger counted (admitted, duplicates, quarantined)={got}, expected {want}")
    return counts


# --- NATS JetStream ---------------------------------------------------------------------------


def unique_stream(label: str, who: str) -> tuple[str, str]:
    """A stream name and subject prefix no other contender uses."""
    tag = f"{label}_{who}_{uuid.uuid4().hex[:8]}"
    return f"BENCH_{tag.upper()}", f"bench_{tag}.windows"


def stream_config(stream: str, prefix: str) -> StreamConfig:
    """The config the ledger's publisher creates its stream with (see ledger.infrastructure)."""
    return StreamConfig(
        name=stream,
        subjects=[f"{prefix}.>"],
        duplicate_window=NatsSettings(url="").duplicate_window_seconds,  # 24 h
        storage=StorageType.FILE,
    )


def message_body(a: Admission) -> bytes:
    """The ledger's message body (the same fields, in the same order, as its _Body struct)."""
    return _json.encode(
        {
            "window_id": a.window_id,
            "identity": a.identity,
            "event_type": a.event_type,
            "event_id": a.event_id,
            "payload": a.payload,
            "payload_hash": a.payload_hash,
        }
    )


def raw_jetstream_run(url: str, label: str, workload: Workload, time_limit: float) -> Run:
    """Publish each batch's new identities, concurrently per batch, to a fresh stream."""
    stream, prefix = unique_stream(label, "raw")
    subject = f"{prefix}.{subject_token(WINDOW_ID)}"
    loop = asyncio.new_event_loop()
    seen: set[str] = set()
    tally = {"published": 0, "duplicate_acks": 0}
    try:
        nc = loop.run_until_complete(nats.connect(url, connect_timeout=2, allow_reconnect=False))
        try:
            js: JetStreamContext = nc.jetstream()
            loop.run_until_complete(js.add_stream(stream_config(stream, prefix)))

            async def publish_all(messages: list[tuple[str, bytes]]) -> list[Any]:
                return await asyncio.gather(
                    *(
                        js.publish(subject, body, headers={"Nats-Msg-Id": identity})
                        for identity, body in messages
                    )
                )

            def step(items: list[AdmissionIn]) -> float:
                messages = []  # not timed: what the ledger would publish for this batch
                for a in prepare(WINDOW_ID, items):
                    if a.identity not in seen:
                        seen.add(a.identity)
                        messages.append((a.identity, message_body(a)))
                acks, elapsed = harness.timed(
                    lambda: loop.run_until_complete(publish_all(messages))
                )
                tally["published"] += len(acks)
                tally["duplicate_acks"] += sum(1 for ack in acks if ack.duplicate)
                return elapsed

            run = drive(label, NAMES["raw"], workload, step, time_limit)
            run.messages = tally["published"]
            info = loop.run_until_complete(js.stream_info(stream))
            stored = int(info.state.messages)
            loop.run_until_complete(js.delete_stream(stream))
        finally:
            loop.run_until_complete(nc.close())
    finally:
        loop.close()
    if tally["duplicate_acks"] or stored != run.messages:
        raise Void(
            f"raw jetstream: {run.messages} published, {tally['duplicate_acks']} acked as "
            f"duplicates, the stream holds {stored}"
        )
    if not run.partial and run.messages != workload.counts()["new"]:
        raise Void(f"raw jetstream published {run.messages}, expected {workload.counts()['new']}")
    return run


# --- the command line: `ledger admit WINDOW FILE` ---------------------------------------------


@dataclass(frozen=True)
class CliInput:
    """What every `ledger admit` run of one backend reads: the file and the signing key."""

    lines: Path
    key: Path


def write_lines(workload: Workload, path: Path) -> int:
    """The workload as a JSON-lines file, one admission object a line as a producer writes it
    (no `source`); its size in bytes."""
    with open(path, "wb") as f:
        for batch in workload.batches():
            f.write(
                b"".join(
                    _json.encode(
                        {"event_type": i.event_type, "event_id": i.event_id, "payload": i.payload}
                    )
                    + b"\n"
                    for i in batch
                )
            )
    return path.stat().st_size


def cli_input(backend: Backend, workload: Workload) -> CliInput:
    """The file and a signing key (made here, so no run makes one), in the backend's directory."""
    lines = backend.databases.dir / "admissions.jsonl"
    size = write_lines(workload, lines)
    key = backend.databases.dir / "signing-key.pem"
    Ed25519Signer.load_or_create(key)
    say(f"  ledger admit reads {lines.name}: {workload.events:,} lines, {size / 1e6:.1f} MB")
    return CliInput(lines, key)


def maxrss_mb(maxrss: float) -> float:
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


def cli_counts(stdout: str) -> dict[str, int]:
    """The count per verdict `ledger admit` printed (its indented lines)."""
    rows = [line.split() for line in stdout.splitlines() if line.startswith("  ")]
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


def run_cli(
    backend: Backend, workload: Workload, given: CliInput, tag: str, time_limit: float
) -> Run:
    """`ledger admit WINDOW FILE` as an operator runs it (progress bar on stderr) on a fresh
    database, timed from start to exit; its peak RSS from the kernel's account of the child.
    The environment is the benchmark's without any other LEDGER_* setting: the library-level
    ledger is built from the defaults too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env |= {
        "LEDGER_DATABASE_URL": backend.fresh_database_url(tag),
        "LEDGER_PUBLISHER": "embedded",
        "LEDGER_SIGNING_KEY": str(given.key),
    }
    command = [sys.executable, "-m", "service.cli", "admit", WINDOW_ID, str(given.lines)]
    out_path = backend.databases.dir / f"{tag}.stdout"
    err_path = backend.databases.dir / f"{tag}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=ROOT
        )
        limit = threading.Timer(time_limit, process.kill)
        limit.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            limit.cancel()
        seconds = time.perf_counter() - started
    process.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "\n".join(err_path.read_text(errors="replace").splitlines()[-10:])
        raise Void(
            f"ledger admit exited {code} after {seconds:.1f} s (limit {time_limit:.0f} s):\n{tail}"
        )
    counts = cli_counts(out_path.read_text())
    expected = workload.counts()
    want = {
        "ADMITTED": expected["new"],
        "DUPLICATE": expected["duplicate"],
        "QUARANTINED": expected["mismatch"],
        "PUBLISH_UNKNOWN": 0,
    }
    if counts != want:
        raise Void(f"ledger admit printed {counts}, expected {want}")
    run = Run(NAMES["cli"], [workload.events], [seconds])
    run.peak_rss_after = maxrss_mb(usage.ru_maxrss)
    return run


def say_cli_run(run: Run) -> None:
    say(
        f"  run: {run.name:<24} {run.rate:>10,.0f} events/s  ({run.events:,} lines in "
        f"{run.seconds:.2f} s from start to exit; peak RSS {run.peak_rss_after:.0f} MB)"
    )


# --- one backend, all contenders --------------------------------------------------------------


@dataclass
class Outcome:
    label: str
    ledger: Run
    baselines: dict[str, list[Run]]
    profiled: bool
    nats_ledger: Run | None = None
    ledger_runs: list[Run] = field(default_factory=list)
    cli_runs: list[Run] = field(default_factory=list)

    def best(self, variant: str) -> Run:
        return harness.best(self.baselines[variant])

    def ratio(self, variant: str) -> float:
        return harness.ratio(self.ledger.rate, self.best(variant).rate)

    @property
    def nats_ratio(self) -> float:
        """ledger+nats admissions/s divided by raw-jetstream admissions/s (best raw run)."""
        assert self.nats_ledger is not None
        return harness.ratio(self.nats_ledger.rate, self.best("raw").rate)

    @property
    def cli_ratio(self) -> float:
        """`ledger admit` events/s divided by the library-level ledger's (best runs)."""
        return harness.ratio(harness.best(self.cli_runs).rate, self.ledger.rate)


def open_ledger(
    backend: Backend, nats_url: str | None, fresh_tag: str | None
) -> tuple[Ledger, str]:
    """The ledger a run measures (its tables are created here: not timed), and its stream."""
    if nats_url is None and fresh_tag is None:
        return backend.ledger(), ""
    if nats_url is None:
        # A second run of the ledger: a database of its own, as each baseline run has a
        # table of its own.
        return backend.ledger(backend.fresh_database_url(fresh_tag or "ledger")), ""
    # LEDGER_PUBLISHER=nats://...: a fresh database and a fresh stream of its own.
    stream, prefix = unique_stream(backend.label, "ledger")
    settings = Settings(
        database_url=backend.fresh_database_url("nats"),
        publisher=nats_url,
        nats_stream=stream,
        nats_subject_prefix=prefix,
    )
    return build_ledger(settings), stream


def drive_ledger(
    backend: Backend, who: str, workload: Workload, step: Step, args: argparse.Namespace
) -> Run:
    """Drive the ledger; under --profile, write its stats and print the top functions."""
    if not args.profile:
        return drive(backend.label, NAMES[who], workload, step, args.time_limit)
    run, profiler = harness.profiled(
        lambda: drive(backend.label, NAMES[who], workload, step, args.time_limit)
    )
    suffix = f".{backend.label}.pstats" if who == "ledger" else f".{backend.label}.nats.pstats"
    path = Path(args.profile).with_suffix(suffix)
    heading = f"[{backend.label}] {NAMES[who]} profile written to {path}; top functions:"
    harness.write_profile(profiler, path, heading, top=25)
    return run


def run_ledger(
    backend: Backend,
    workload: Workload,
    args: argparse.Namespace,
    nats_url: str | None = None,
    fresh_tag: str | None = None,
) -> Run:
    who = "ledger" if nats_url is None else "nats"
    app, stream = open_ledger(backend, nats_url, fresh_tag)
    try:
        bus = app.publisher if isinstance(app.publisher, InspectableBus) else None
        if bus is not None and bus.count(WINDOW_ID) != 0:  # connects, creates the stream: untimed
            raise Void(f"{NAMES[who]}: the fresh stream {stream} is not empty")
        run = drive_ledger(backend, who, workload, ledger_step(app), args)
        counts = check_ledger(app, run, workload)
        say(
            f"  {NAMES[who]} window counts: admitted {counts['admitted']:,}, duplicates "
            f"{counts['duplicates']:,}, quarantined {counts['quarantined']:,}"
        )
        if bus is not None:
            run.messages = bus.count(WINDOW_ID)
            if run.messages != counts["admitted"]:
                raise Void(
                    f"{NAMES[who]}: the stream holds {run.messages} messages for the window, "
                    f"the ledger admitted {counts['admitted']}"
                )
            say(f"  {NAMES[who]} stream {stream} holds {run.messages:,} messages for the window")
    finally:
        app.close()
        app.publisher.close()
    if nats_url is not None:
        from tests.support.nats import delete_stream

        delete_stream(nats_url, stream)  # only tidiness: the server and its store go at the end
    return run


def contender_order(args: argparse.Namespace) -> list[str]:
    if args.cli:
        return ["cli", "ledger"] + (["ledger"] if not args.profile else []) + ["cli"]
    hand = args.publisher in ("embedded", "both") and not args.ledger_only
    with_nats = args.publisher in ("nats", "both")
    raw = with_nats and not args.ledger_only
    order = ["a", "b"] if hand else []
    order += ["raw"] if raw else []
    # Scored like the baselines, by the better of two runs (one run for the long variant
    # and under the profiler).
    twice = hand and not args.long and not args.profile
    order += ["ledger"] * (2 if twice else 1) + (["nats"] if with_nats else [])
    order += ["raw"] if raw else []
    order += ["b", "a"] if hand else []
    return order


SHORT = {"a": "baseline(a)", "b": "baseline(b)", "raw": "raw jetstream"}


def say_order(order: list[str]) -> None:
    if len(order) > 1:
        say(
            "  order: "
            + ", ".join(SHORT.get(who, NAMES[who]) for who in order)
            + (
                "; each contender run twice is scored by the better of its two runs (warm-up "
                "favours no one)"
                if any(who in order for who in ("a", "b", "raw", "cli"))
                else ""
            )
        )


def say_run(run: Run) -> None:
    say(
        f"  run: {run.name:<24} {run.rate:>10,.0f} events/s  ({run.events:,} events in "
        f"{run.seconds:.2f} s timed; first 10% {run.edge_rate(False):,.0f}/s, last 10% "
        f"{run.edge_rate(True):,.0f}/s)"
        + (f"; {run.message_rate:,.0f} messages/s" if run.messages else "")
        + ("  PARTIAL (time limit)" if run.partial else "")
    )


def bench_backend(
    backend: Backend,
    workload: Workload,
    args: argparse.Namespace,
    nats_server: NatsServer | None = None,
) -> Outcome:
    label = backend.label
    say(f"\n== {label}: {backend.describe()}")
    baselines: dict[str, list[Run]] = {"a": [], "b": [], "raw": []}
    ledger_runs: list[Run] = []
    cli_runs: list[Run] = []
    nats_run: Run | None = None
    given: CliInput | None = None
    order = contender_order(args)
    say_order(order)
    for who in order:
        note(f"[{label}] running {NAMES[who]} ...")
        if who == "cli":
            given = given or cli_input(backend, workload)
            run = run_cli(backend, workload, given, f"cli{len(cli_runs) + 1}", args.time_limit)
            cli_runs.append(run)
            say_cli_run(run)
            continue
        if who == "ledger":
            tag = f"ledger{len(ledger_runs) + 1}" if ledger_runs else None
            run = run_ledger(backend, workload, args, fresh_tag=tag)
            ledger_runs.append(run)
        elif who == "nats":
            assert nats_server is not None
            nats_run = run_ledger(backend, workload, args, nats_server.url)
            run = nats_run
        elif who == "raw":
            assert nats_server is not None
            run = raw_jetstream_run(nats_server.url, label, workload, args.time_limit)
            baselines[who].append(run)
        else:
            run = backend.baseline(who, workload, args.time_limit)
            baselines[who].append(run)
        say_run(run)
    assert ledger_runs
    return Outcome(
        label,
        harness.best(ledger_runs),
        baselines,
        profiled=bool(args.profile),
        nats_ledger=nats_run,
        ledger_runs=ledger_runs,
        cli_runs=cli_runs,
    )


def report(outcome: Outcome) -> None:
    label, led = outcome.label, outcome.ledger
    say(f"\n-- {label} results")
    if outcome.profiled:
        say("  NOTE: the ledger ran under cProfile; its throughput and the ratios are distorted")
    if len(outcome.ledger_runs) > 1:
        each = ", ".join(f"{r.rate:,.0f}" for r in outcome.ledger_runs)
        say(f"  ledger                   {led.rate:>10,.0f} events/s  (best of runs: {each})")
    else:
        say(f"  ledger                   {led.rate:>10,.0f} events/s")
    for variant in ("a", "b"):
        runs = outcome.baselines[variant]
        if not runs:
            continue
        each = ", ".join(f"{r.rate:,.0f}" for r in runs)
        say(
            f"  {NAMES[variant]:<24} {outcome.best(variant).rate:>10,.0f} events/s  "
            f"(best of runs: {each})"
        )
    if outcome.baselines["a"]:
        report_ratios(outcome)
    report_flatness(outcome)
    samples = ", ".join(f"{e:,}: {mb:.0f}" for e, mb in led.rss_samples)
    say(
        f"MEMORY {label} ledger: peak RSS {led.peak_rss_before:.1f} MB before, "
        f"{led.peak_rss_after:.1f} MB after (+{led.peak_rss_after - led.peak_rss_before:.1f} MB)"
    )
    if samples:
        say(f"  current RSS (MB) at events admitted: {samples}")
    if outcome.nats_ledger is not None:
        report_nats(outcome)
    if outcome.cli_runs:
        report_cli(outcome)


def report_cli(outcome: Outcome) -> None:
    label, led = outcome.label, outcome.ledger
    top = harness.best(outcome.cli_runs)
    each = ", ".join(f"{r.rate:,.0f}" for r in outcome.cli_runs)
    say(
        f"  {NAMES['cli']:<24} {top.rate:>10,.0f} events/s  (best of runs: {each}; the command "
        "from start to exit)"
    )
    cli_ratio = outcome.cli_ratio
    harness.say_ratio(
        label, "ledger-admit/library", cli_ratio, harness.target_note(cli_ratio, TARGET_CLI_RATIO)
    )
    say(
        f"  = `ledger admit` of a {top.events:,}-line file, events/s from start to exit, / the "
        f"library-level ledger's {led.rate:,.0f} events/s (PreparedOnUse + Ledger.admit, timed "
        "sections) on a fresh window of the same size"
    )
    say(
        f"MEMORY {label} ledger admit: peak RSS "
        + ", ".join(f"{r.peak_rss_after:.0f}" for r in outcome.cli_runs)
        + f" MB over {top.events:,} lines (the command's own)"
    )


def report_ratios(outcome: Outcome) -> None:
    label = outcome.label
    ra, rb = outcome.ratio("a"), outcome.ratio("b")
    if label == "postgres":
        comment = harness.target_note(ra, TARGET_RATIO)
    else:
        comment = f"(the {TARGET_RATIO} target is PostgreSQL's; for information)"
    harness.say_ratio(label, "ledger/baseline(a) same work ", ra, comment)
    harness.say_ratio(label, "ledger/baseline(b) raw insert", rb, "(for information)")


def report_flatness(outcome: Outcome) -> None:
    label, led = outcome.label, outcome.ledger
    first_events, first_s = led.edge(last=False)
    last_events, last_s = led.edge(last=True)
    flat = led.flatness
    say(
        f"FLATNESS {label} ledger: first 10% {led.edge_rate(False):,.0f} events/s "
        f"({first_events:,} events in {first_s:.2f} s), last 10% {led.edge_rate(True):,.0f} "
        f"events/s ({last_events:,} events in {last_s:.2f} s); last/first = {flat:.2f} "
        f"(target >= {TARGET_FLATNESS}: {harness.verdict(flat, TARGET_FLATNESS)})"
    )
    say(
        f"  median batch, last/first = {led.median_flatness:.2f} (noise check); baselines' "
        "last/first: "
        + (
            ", ".join(
                f"{r.name.split()[0]} {r.flatness:.2f}"
                for variant in ("a", "b")
                for r in outcome.baselines[variant]
            )
            or "not run"
        )
    )


def report_nats(outcome: Outcome) -> None:
    label, led, nl = outcome.label, outcome.ledger, outcome.nats_ledger
    assert nl is not None
    say(f"\n-- {label} NATS JetStream results (admissions/s = admissions / summed timed seconds)")
    say(f"  ledger (embedded)        {led.rate:>10,.0f} admissions/s")
    say(
        f"  ledger+nats              {nl.rate:>10,.0f} admissions/s  ({nl.messages:,} messages "
        f"published, {nl.message_rate:,.0f} messages/s)"
    )
    raws = outcome.baselines["raw"]
    if not raws:
        say(f"  ledger+nats/ledger embedded = {harness.ratio(nl.rate, led.rate):.2f}")
        return
    top = outcome.best("raw")
    each = ", ".join(f"{r.message_rate:,.0f} msg/s = {r.rate:,.0f} adm/s" for r in raws)
    say(
        f"  raw jetstream            {top.rate:>10,.0f} admissions/s  ({top.messages:,} "
        f"messages, {top.message_rate:,.0f} messages/s; best of runs: {each})"
    )
    nats_ratio = outcome.nats_ratio
    harness.say_ratio(
        label,
        "ledger+nats/raw jetstream",
        nats_ratio,
        harness.target_note(nats_ratio, TARGET_NATS_RATIO),
        gap=" ",
    )
    say(
        "  = ledger+nats admissions/s / raw jetstream admissions/s, over the same batches (raw "
        "publishes each batch's new identities, timed from first publish to last ack)"
    )
    say(
        f"NATS {label}: ledger embedded {led.rate:,.0f} admissions/s; ledger+nats "
        f"{nl.rate:,.0f} admissions/s; raw jetstream {top.rate:,.0f} admissions/s "
        f"({top.message_rate:,.0f} messages/s); ledger+nats/ledger embedded "
        f"{harness.ratio(nl.rate, led.rate):.2f}"
    )
    # Where the ledger+nats time goes, by subtraction (same batches, same run).
    nats_ms, raw_ms, led_ms = (
        r.seconds / max(1, len(r.batch_seconds)) * 1000 for r in (nl, top, led)
    )
    say(
        f"  mean time per batch: ledger+nats {nats_ms:.1f} ms = raw publish {raw_ms:.1f} ms + the "
        f"rest {nats_ms - raw_ms:.1f} ms; embedded ledger {led_ms:.1f} ms"
    )


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.admission",
        description=(
            "Ledger admission throughput against a hand-written INSERT ... ON CONFLICT DO "
            "NOTHING dedupe (SQLite file, and a throwaway PostgreSQL database), with ratios, "
            "flatness (last 10% / first 10%) and peak RSS. Progress goes to stderr."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--events",
        type=int,
        default=argparse.SUPPRESS,  # its default depends on --cli
        help=f"admissions per contender (default {DEFAULT_EVENTS:,}, CI-friendly; with --cli "
        f"{CLI_EVENTS:,}, the lines of the file)",
    )
    size.add_argument(
        "--long",
        action="store_true",
        help=f"the flatness variant: {LONG_EVENTS:,} events (minutes; not for CI)",
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--publisher",
        choices=["embedded", "nats", "both"],
        default="embedded",
        help="embedded: the ledger against the hand-written baselines; nats: the ledger with "
        "NATS JetStream against raw JetStream publishing (and the embedded ledger for "
        "reference); both: all of them",
    )
    parser.add_argument(
        "--nats",
        dest="publisher",
        action="store_const",
        const="nats",
        help="the same as --publisher nats",
    )
    parser.add_argument(
        "--nats-server",
        metavar="PATH",
        default=os.environ.get("LEDGER_BENCH_NATS_SERVER"),
        help="the nats-server binary to start (default: /usr/sbin/nats-server, else PATH)",
    )
    parser.add_argument(
        "--cli",
        action="store_true",
        help="the command line replay: `ledger admit WINDOW FILE` (the real command, a "
        "subprocess) of an --events-line file against the library-level ledger on a fresh "
        "window of the same size, each run twice (no baselines)",
    )
    harness.add_postgres_url_argument(parser)
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH, help=f"events per batch, 1..{MAX_BATCH}"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="workload seed")
    parser.add_argument(
        "--ledger-only",
        action="store_true",
        help="run only the ledger (flatness and memory; no baselines, no ratios)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=1800.0,
        help="seconds after which a contender stops early (its figures are marked PARTIAL)",
    )
    harness.add_profile_argument(
        parser,
        "run the ledger under cProfile, write PATH.<backend>.pstats and print the top "
        "functions to stderr (distorts the ledger's figures)",
    )
    args = parser.parse_args(argv)
    if args.long:
        args.events = LONG_EVENTS
    elif "events" not in args:
        args.events = CLI_EVENTS if args.cli else DEFAULT_EVENTS
    if args.events < 1:
        parser.error("--events must be at least 1")
    if not 1 <= args.batch_size <= MAX_BATCH:
        parser.error(f"--batch-size must be 1..{MAX_BATCH}")
    if args.cli and (args.publisher != "embedded" or args.ledger_only):
        parser.error("--cli measures the embedded publisher, with no other contender")
    if args.cli and args.batch_size != CLI_BATCH:
        parser.error(f"--cli: `ledger admit` admits in batches of {CLI_BATCH}")
    return args


def start_nats(args: argparse.Namespace, stack: ExitStack) -> NatsServer | None:
    """The benchmark's own nats-server (stopped when `stack` closes); None if it cannot run."""
    binary = harness.find_nats_server(args.nats_server)
    if binary is None:
        say(
            "ERROR: --publisher nats needs the nats-server binary "
            f"({args.nats_server or '/usr/sbin/nats-server or nats-server on PATH'})"
        )
        return None
    version = harness.nats_version(binary)
    try:
        server = stack.enter_context(harness.own_nats_server(binary))
    except (OSError, RuntimeError) as exc:
        say(f"ERROR: cannot start {binary}: {exc}")
        return None
    say(
        f"NATS: own {version} ({binary}) at {server.url}, JetStream file store in "
        f"{server.store_dir}; fresh stream per contender; killed at the end"
    )
    say(
        "ledger+nats = PreparedOnUse + Ledger.admit with LEDGER_PUBLISHER=nats; raw jetstream = "
        "js.publish of each batch's new identities with Nats-Msg-Id, asyncio.gather per batch"
    )
    return server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workload = Workload(args.events, args.batch_size, args.seed)
    counts = workload.counts()
    sample = msgspec.json.encode(_payload(0, args.seed))
    say(
        f"admission benchmark: {args.events:,} events per contender in {workload.n_batches:,} "
        f"batches of {args.batch_size}, one window; new {counts['new']:,}, exact duplicates "
        f"{counts['duplicate']:,}, mismatches {counts['mismatch']:,} (seed {args.seed}); "
        f"payload {len(sample)} bytes, e.g. {sample.decode()}"
    )
    say(
        "events/s = events / summed timed sections per batch (workload generation untimed); "
        "ledger = PreparedOnUse + Ledger.admit; baseline(a) = prepare + one INSERT ... ON "
        "CONFLICT DO NOTHING transaction per batch; baseline(b) = that transaction only"
    )
    if args.cli:
        say(
            "ledger admit = `python -m service.cli admit WINDOW FILE` as a subprocess, events/s "
            "= lines / seconds from its start to its exit (writing the file untimed)"
        )
    say(f"machine: {os.cpu_count()} CPUs, load average at start {harness.load_average()}")
    with ExitStack() as stack:
        nats_server: NatsServer | None = None
        if args.publisher in ("nats", "both"):
            nats_server = start_nats(args, stack)
            if nats_server is None:
                return 2
        return run_all(args, workload, nats_server)


def run_all(args: argparse.Namespace, workload: Workload, nats_server: NatsServer | None) -> int:
    code, outcomes = harness.run_backends(
        args.backend,
        args.postgres_url,
        "bench-admission-",
        lambda databases: bench_backend(backend_for(databases), workload, args, nats_server),
        report,
    )
    if code:
        return code
    load = harness.load_average()
    say(f"\n== summary (load average at end {load}; compare ratios, not absolutes)")
    for outcome in outcomes:
        line = f"  {outcome.label:<8} ledger {outcome.ledger.rate:,.0f} events/s"
        if outcome.baselines["a"]:
            line += (
                f"; ledger/baseline(a) {outcome.ratio('a'):.2f}, "
                f"ledger/baseline(b) {outcome.ratio('b'):.2f}"
            )
        line += f"; flatness {outcome.ledger.flatness:.2f}"
        line += f"; peak RSS {outcome.ledger.peak_rss_after:.0f} MB"
        say(line)
        if outcome.cli_runs:
            say(
                f"  {outcome.label:<8} ledger admit "
                f"{harness.best(outcome.cli_runs).rate:,.0f} events/s; ledger-admit/library "
                f"{outcome.cli_ratio:.2f}"
            )
        if outcome.nats_ledger is not None:
            line = f"  {outcome.label:<8} ledger+nats {outcome.nats_ledger.rate:,.0f} admissions/s"
            if outcome.baselines["raw"]:
                top = outcome.best("raw")
                line += (
                    f"; raw jetstream {top.rate:,.0f} admissions/s ({top.message_rate:,.0f} "
                    f"messages/s); ledger+nats/raw jetstream {outcome.nats_ratio:.2f}"
                )
            say(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
