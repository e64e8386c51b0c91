"""Page latency (issue 13): every page of the reviewer's UI on one 1,000,000-admission window,
served by the real service, against its own JSON receipt measured in the same run, on SQLite and
PostgreSQL.

    .venv/bin/python -m benchmarks.pages                              # 1,000,000 events, both
    .venv/bin/python -m benchmarks.pages --events 100000 --backend postgres --repeats 10

For each backend, in one run, on a database of its own (an SQLite file in a temporary directory;
a PostgreSQL database created for the run and dropped at the end), with a signing key of the
run's own:

* fill (not timed, but reported): ONE window (`bench-pages-big`) of `--events` admissions, all
  new identities (payloads of six fields, about 110 bytes in canonical form), `prepare` +
  `Ledger.admit` in batches of 500; after every 100th batch (the 1st, the 101st, ...) ten of its
  items are sent again: 5 unchanged (DUPLICATE) and 5 with their `qty` changed (QUARANTINED),
  so the quarantine queue holds more than one page (100 entries at 1,000,000). Then the window
  is closed and signed as the service closes it (`Ledger.close_window`, `Evidence.seal`); three
  small windows of 100 admissions each stay OPEN (the windows list has several rows and gates);
  then the read side is brought up to the head (`ProjectionRunner.run_until_caught_up`).
* the real service: `ledger serve` (`python -m service.cli serve`) as a subprocess on a free
  127.0.0.1 port against the same database, with the run's signing key, embedded publisher,
  auth off and LEDGER_SCRUB_INTERVAL_SECONDS=0 (no background scrub). The service still checks
  every closed window once at start, paced to a fifth of the process: the benchmark waits until
  that check of the big window is recorded, then until the server is idle, so no check competes
  with the requests (the wait is reported).
* latency, ms per GET, client side (request sent to body read; one httpx.Client, keep-alive):
  one untimed warm-up round, then `--repeats` timed rounds; each round GETs every URL once, in
  the order below, so drift on the noisy machine falls on all alike. Per URL: p50, p95 (nearest
  rank) and max. W is the big window:
    baselines   /health; /v1/windows/W/receipt (the JSON receipt); /v1/windows/W/history?limit=50
    pages       /; /?gate=PASS; /?q=<part of W>; /windows/W; /windows/W/quarantine;
                /windows/W/quarantine?after=<the JSON queue's next cursor after 50 entries (all
                but the last entry at small sizes)>; /windows/W/history; the history page after
                half the admissions and the one after all but the last 50 events;
                /windows/W/receipt.md
  RATIO page p50 / JSON receipt p50 is for information; the issue's target is per page:
  TARGET p95 < 300 ms.
* checks (the figures are void, exit 3, if one fails): every admission's verdict is what was
  sent (ADMITTED, DUPLICATE, QUARANTINED); every answer is 200 with its content type (pages
  text/html, receipt.md text/plain, baselines application/json); every page names W, the list
  names the open windows too, and its filters (`?gate=PASS`, `?q=`) leave them out; both
  quarantine pages highlight a changed field (`<mark`); the history page after N names version
  N+1, the last one the window's last version; the JSON receipt says CLOSED, PASS, admitted =
  `--events`, duplicates and quarantined = what was sent; the check at start finds W whole.
* memory: the server's peak RSS (VmHWM from /proc) after the rounds, for information.

The machine is noisy (2 cores shared with the server): compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from benchmarks import harness
from benchmarks.harness import Databases, Server, Void, note, say
from benchmarks.scrub import migrate, order_item, settings_for
from ledger.admissions import AdmissionIn, prepare
from ledger.verdicts import Verdict
from projections.evidence import EvidenceStore
from projections.store import create_read_store
from service.composition import Services, build_services
from service.settings import Settings

DEFAULT_EVENTS = 1_000_000
DEFAULT_REPEATS = 20
DEFAULT_SEED = 20261130
BATCH = 500
REPEAT_EVERY = 100  # batches: after every 100th batch, some of its items are sent again
REPEATED = 5  # of them unchanged (DUPLICATE), and as many with a changed payload (QUARANTINED)
OPEN_WINDOWS = 3
OPEN_WINDOW_EVENTS = 100
TARGET_P95_MS = 300.0  # every page, on a 1,000,000-admission window (the target)
QUEUE_PAGE = 50
HISTORY_PAGE = 50
START_CHECK_TIMEOUT_SECONDS = 3600.0
REQUEST_TIMEOUT_SECONDS = 120.0
BIG_WINDOW = "bench-pages-big"
BIG_WINDOW_PART = "pages-big"  # the ?q= filter
OPEN_PREFIX = "bench-pages-open-"

# --- workload ---------------------------------------------------------------------------------


def _changed(item: AdmissionIn) -> AdmissionIn:
    """The same identity with another payload: quarantined."""
    return msgspec.structs.replace(item, payload={**item.payload, "qty": item.payload["qty"] + 10})


def batch_items(tag: str, index: int, events: int, seed: int) -> list[AdmissionIn]:
    stop = min((index + 1) * BATCH, events)
    return [order_item(tag, j, seed) for j in range(index * BATCH, stop)]


# --- the services of the run ------------------------------------------------------------------


@dataclass
class Filled:
    """What the fill sent, beside `--events` new identities in the big window."""

    duplicates: int = 0
    quarantined: int = 0
    fill_seconds: float = 0.0
    catch_up_seconds: float = 0.0


def admit_expecting(
    services: Services, window_id: str, items: list[AdmissionIn], expected: list[Verdict]
) -> None:
    results = services.ledger.admit(window_id, prepare(window_id, items))
    verdicts = [r.verdict for r in results]
    if verdicts != expected:
        wrong = next(
            (i, got, want)
            for i, (got, want) in enumerate(zip(verdicts, expected, strict=False))
            if got != want
        )
        raise Void(f"{window_id}: admission {wrong[0]} answered {wrong[1]}, not {wrong[2]}")


def send_again(services: Services, items: list[AdmissionIn], filled: Filled) -> None:
    """Ten of a batch's items again: five unchanged, five with another payload."""
    same = items[:REPEATED]
    other = [_changed(item) for item in items[REPEATED : 2 * REPEATED]]
    admit_expecting(
        services,
        BIG_WINDOW,
        same + other,
        [Verdict.DUPLICATE] * len(same) + [Verdict.QUARANTINED] * len(other),
    )
    filled.duplicates += len(same)
    filled.quarantined += len(other)


def fill(label: str, services: Services, args: argparse.Namespace) -> Filled:
    """The big window (admitted, with its repeats, closed and signed), the open windows, and
    the read side caught up."""
    filled = Filled()
    count = math.ceil(args.events / BATCH)
    progress = harness.Tenths(count)
    t0 = time.perf_counter()
    for index in range(count):
        items = batch_items(BIG_WINDOW, index, args.events, args.seed)
        admit_expecting(services, BIG_WINDOW, items, [Verdict.ADMITTED] * len(items))
        if index % REPEAT_EVERY == 0:
            send_again(services, items, filled)
        tenths = progress.crossed(index + 1)
        if tenths is not None:
            elapsed = time.perf_counter() - t0
            done = min((index + 1) * BATCH, args.events)
            note(
                f"[{label}] fill: {tenths * 10:3d}% {done:,}/{args.events:,} admissions, "
                f"{elapsed:.1f} s ({done / elapsed:,.0f} admissions/s)"
            )
    services.evidence.seal(BIG_WINDOW, services.ledger.close_window(BIG_WINDOW))
    for n in range(1, OPEN_WINDOWS + 1):
        window_id = f"{OPEN_PREFIX}{n}"
        items = [order_item(window_id, j, args.seed) for j in range(OPEN_WINDOW_EVENTS)]
        admit_expecting(services, window_id, items, [Verdict.ADMITTED] * len(items))
    filled.fill_seconds = time.perf_counter() - t0
    note(f"[{label}] filled and closed in {filled.fill_seconds:.1f} s; read side ...")
    t0 = time.perf_counter()
    services.runner.run_until_caught_up()
    filled.catch_up_seconds = time.perf_counter() - t0
    receipt = services.read.receipt(BIG_WINDOW)
    if receipt is None or receipt["counts"]["admitted"] != args.events:
        raise Void(f"the read side does not hold the {args.events:,} admitted events: {receipt}")
    note(f"[{label}] read side caught up in {filled.catch_up_seconds:.1f} s")
    return filled


# --- the server -------------------------------------------------------------------------------


@contextlib.contextmanager
def ledger_serve(settings: Settings) -> Iterator[Server]:
    """`ledger serve` on a free port against the run's database, with the run's signing key and
    no background scrub; once GET /health answers 200."""
    from tests.support.server import running_server

    with running_server(
        settings.database_url,
        extra_env={
            "LEDGER_SIGNING_KEY": settings.signing_key,
            "LEDGER_SCRUB_INTERVAL_SECONDS": "0",
        },
        start_timeout=harness.HEALTH_TIMEOUT_SECONDS,
    ) as running:
        yield Server("ledger serve", running)


def wait_for_start_check(label: str, settings: Settings, server: Server) -> float:
    """Wait (bounded) until the service's check at start of the big window is recorded; the
    seconds waited."""
    store = create_read_store(settings.database_url)
    evidence = EvidenceStore(store)
    t0 = time.monotonic()
    last_note = t0
    try:
        while True:
            server.check_alive()
            latest = evidence.latest(BIG_WINDOW)
            if latest is not None and latest["source"] == "start":
                if not latest["ok"]:
                    raise Void(f"the check at start found the big window broken: {latest}")
                return time.monotonic() - t0
            now = time.monotonic()
            if now - t0 > START_CHECK_TIMEOUT_SECONDS:
                raise RuntimeError(
                    f"the check at start of {BIG_WINDOW} was not recorded within "
                    f"{START_CHECK_TIMEOUT_SECONDS:.0f} s:\n{server.tail()}"
                )
            if now - last_note >= 30:
                note(f"[{label}] waiting for the check at start: {now - t0:.0f} s so far")
                last_note = now
            time.sleep(0.5)
    finally:
        store.dispose()


def server_memory_mb(pid: int) -> tuple[float | None, float | None]:
    """(peak, current) RSS of a process in MB, from /proc/PID/status (None elsewhere)."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0]) / 1024
    return found.get("VmHWM"), found.get("VmRSS")


# --- the URLs ---------------------------------------------------------------------------------

HTML = "text/html"
JSON = "application/json"
TEXT = "text/plain"


@dataclass(frozen=True)
class Url:
    kind: str  # "baseline" or "page"
    label: str  # as printed (W for the big window)
    path: str  # as requested
    content_type: str
    present: tuple[str, ...] = ()  # regular expressions the body must match
    absent: tuple[str, ...] = ()  # ... and must not


def version_pattern(version: int) -> str:
    """A version number in a body, plain or with thousands separators."""
    return rf"(?<![\d,])({version}|{version:,})(?![\d,])"


def big_window_facts(
    client: httpx.Client, args: argparse.Namespace, filled: Filled
) -> tuple[int, str]:
    """The JSON receipt held to what was sent; the history's length and the queue cursor."""
    receipt = get_json(client, f"/v1/windows/{BIG_WINDOW}/receipt")
    counts = receipt["counts"]
    wanted = {
        "status": "CLOSED",
        "gate": "PASS",
        "admitted": args.events,
        "duplicates": filled.duplicates,
        "quarantined": filled.quarantined,
    }
    got = {"status": receipt["status"], "gate": receipt["gate"]} | {
        k: counts[k] for k in ("admitted", "duplicates", "quarantined")
    }
    if got != wanted:
        raise Void(f"the JSON receipt says {got}, not {wanted}")
    limit = min(QUEUE_PAGE, filled.quarantined - 1)
    queue = get_json(client, f"/v1/quarantine?window_id={BIG_WINDOW}&limit={limit}")
    if len(queue["items"]) != limit or not queue["next"]:
        raise Void(f"the quarantine queue has no page after {limit} entries: {queue['next']}")
    return int(receipt["events"]), str(queue["next"])


def urls(args: argparse.Namespace, events_total: int, cursor: str) -> list[Url]:
    w = BIG_WINDOW
    big = re.escape(w)
    opens = tuple(re.escape(f"{OPEN_PREFIX}{n}") for n in range(1, OPEN_WINDOWS + 1))
    some_open = (re.escape(OPEN_PREFIX),)
    marked = "<mark"  # a quarantine entry's changed field, highlighted
    middle = args.events // 2
    tail = max(0, events_total - HISTORY_PAGE)
    q = httpx.QueryParams
    return [
        Url("baseline", "/health", "/health", JSON),
        Url("baseline", "/v1/windows/W/receipt", f"/v1/windows/{w}/receipt", JSON, (big,)),
        Url(
            "baseline",
            f"/v1/windows/W/history?limit={HISTORY_PAGE}",
            f"/v1/windows/{w}/history?limit={HISTORY_PAGE}",
            JSON,
        ),
        Url("page", "/", "/", HTML, (big, *opens)),
        Url("page", "/?gate=PASS", "/?gate=PASS", HTML, (big,), some_open),
        Url(
            "page",
            f"/?q={BIG_WINDOW_PART}",
            f"/?{q(q=BIG_WINDOW_PART)}",
            HTML,
            (big,),
            some_open,
        ),
        Url("page", "/windows/W", f"/windows/{w}", HTML, (big,)),
        Url("page", "/windows/W/quarantine", f"/windows/{w}/quarantine", HTML, (big, marked)),
        Url(
            "page",
            "/windows/W/quarantine?after=<cursor>",
            f"/windows/{w}/quarantine?{q(after=cursor)}",
            HTML,
            (big, marked),
        ),
        Url("page", "/windows/W/history", f"/windows/{w}/history", HTML, (big,)),
        Url(
            "page",
            f"/windows/W/history?after={middle}",
            f"/windows/{w}/history?after={middle}",
            HTML,
            (big, version_pattern(middle + 1)),
        ),
        Url(
            "page",
            f"/windows/W/history?after={tail}",
            f"/windows/{w}/history?after={tail}",
            HTML,
            (big, version_pattern(events_total)),
        ),
        Url("page", "/windows/W/receipt.md", f"/windows/{w}/receipt.md", TEXT, (big,)),
    ]


def get_json(client: httpx.Client, path: str) -> Any:
    response = client.get(path)
    if response.status_code != 200:
        raise Void(f"GET {path} answered {response.status_code}: {response.text[:500]}")
    return response.json()


def check_answer(url: Url, response: httpx.Response) -> None:
    """200, the content type, and what the body must and must not hold."""
    problem = None
    content_type = response.headers.get("content-type", "")
    if response.status_code != 200:
        problem = f"answered {response.status_code}"
    elif not content_type.startswith(url.content_type):
        problem = f"answered {content_type!r}, not {url.content_type}"
    else:
        body = response.text
        missing = [p for p in url.present if not re.search(p, body)]
        there = [p for p in url.absent if re.search(p, body)]
        if missing or there:
            problem = f"the body lacks {missing} or holds {there}"
    if problem:
        raise Void(f"GET {url.path} {problem}: {response.text[:300]!r}")


# --- latency ----------------------------------------------------------------------------------


@dataclass
class Latency:
    url: Url
    ms: list[float] = field(default_factory=list)

    def at(self, share: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.ms)
        return ordered[max(0, math.ceil(share * len(ordered)) - 1)]

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:
        return self.at(0.95)

    @property
    def max(self) -> float:
        return max(self.ms)


def measure(label: str, client: httpx.Client, wanted: list[Url], repeats: int) -> list[Latency]:
    """One untimed warm-up round, then `repeats` rounds of every URL once, in order."""
    latencies = [Latency(url) for url in wanted]
    progress = harness.Tenths(repeats)
    for round_no in range(repeats + 1):
        for latency in latencies:
            t0 = time.perf_counter()
            response = client.get(latency.url.path)
            ms = (time.perf_counter() - t0) * 1000
            check_answer(latency.url, response)
            if round_no:
                latency.ms.append(ms)
        tenths = progress.crossed(round_no) if round_no else None
        if tenths is not None:
            note(f"[{label}] rounds: {tenths * 10:3d}% ({round_no}/{repeats})")
    return latencies


# --- one backend --------------------------------------------------------------------------------


@dataclass
class Outcome:
    label: str
    events: int
    events_total: int = 0
    filled: Filled = field(default_factory=Filled)
    start_check_seconds: float = 0.0
    latencies: list[Latency] = field(default_factory=list)
    server_peak_rss: float | None = None
    server_rss: float | None = None

    @property
    def receipt(self) -> Latency:
        return next(x for x in self.latencies if x.url.label == "/v1/windows/W/receipt")

    @property
    def pages(self) -> list[Latency]:
        return [x for x in self.latencies if x.url.kind == "page"]

    @property
    def misses(self) -> list[Latency]:
        return [x for x in self.pages if x.p95 >= TARGET_P95_MS]


def describe(databases: Databases) -> str:
    if databases.backend == "postgres":
        return databases.describe_postgres()
    return f"SQLite, file {databases.dir / 'ledger.db'} (WAL; events and read models together)"


def bench_backend(databases: Databases, args: argparse.Namespace) -> Outcome:
    label = databases.backend
    say(f"\n== {label}: {describe(databases)}")
    settings = settings_for(databases)
    migrate(settings)
    outcome = Outcome(label, args.events)
    services = build_services(settings)
    try:
        note(f"[{label}] filling one window with {args.events:,} admissions ...")
        outcome.filled = fill(label, services, args)
    finally:
        services.close()
    f = outcome.filled
    say(
        f"  fill: {args.events:,} admissions + {f.duplicates} duplicates + {f.quarantined} "
        f"quarantined into {BIG_WINDOW}, closed and signed, and {OPEN_WINDOWS} open windows of "
        f"{OPEN_WINDOW_EVENTS}: {f.fill_seconds:.1f} s ({args.events / f.fill_seconds:,.0f} "
        f"admissions/s); read side caught up in {f.catch_up_seconds:.1f} s"
    )
    note(f"[{label}] starting ledger serve ...")
    t0 = time.monotonic()
    with ledger_serve(settings) as server:
        up = time.monotonic() - t0
        note(f"[{label}] up in {up:.1f} s; waiting for its check at start of {BIG_WINDOW} ...")
        outcome.start_check_seconds = wait_for_start_check(label, settings, server)
        idle = harness.wait_quiet([server])
        say(
            f"  ledger serve (pid {server.pid}) answered /health after {up:.1f} s; its check at "
            f"start of {BIG_WINDOW} was recorded {outcome.start_check_seconds:.1f} s later; "
            f"idle {idle:.1f} s after that"
        )
        with httpx.Client(base_url=server.running.url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
            outcome.events_total, cursor = big_window_facts(client, args, outcome.filled)
            say(f"  window {BIG_WINDOW}: {outcome.events_total:,} events in its history")
            wanted = urls(args, outcome.events_total, cursor)
            note(f"[{label}] {len(wanted)} URLs, a warm-up round and {args.repeats} rounds ...")
            outcome.latencies = measure(label, client, wanted, args.repeats)
        server.check_alive()
        outcome.server_peak_rss, outcome.server_rss = server_memory_mb(server.pid)
    return outcome


def report(o: Outcome) -> None:
    say(
        f"\n-- {o.label} results (ms per GET, client side, {len(o.receipt.ms)} rounds after a "
        f"warm-up; W = {BIG_WINDOW}, {o.events_total:,} events)"
    )
    width = max(len(x.url.label) for x in o.latencies)
    for x in o.latencies:
        say(
            f"  {x.url.kind:<8} {x.url.label:<{width}}  p50 {x.p50:8.1f}  p95 {x.p95:8.1f}  "
            f"max {x.max:8.1f}"
        )
    base = o.receipt.p50
    for x in o.pages:
        harness.say_ratio(
            o.label,
            f"{x.url.label} p50/JSON receipt p50",
            harness.ratio(x.p50, base),
            "(for information)",
        )
    for x in o.pages:
        verdict = "PASS" if x.p95 < TARGET_P95_MS else "MISS"
        say(
            f"TARGET {o.label} {x.url.label} p95 <{TARGET_P95_MS:.0f} ms: {verdict} "
            f"({x.p95:.1f} ms)"
        )
    if o.server_peak_rss is not None:
        say(
            f"MEMORY {o.label}: ledger serve peak RSS {o.server_peak_rss:.1f} MB (VmHWM), "
            f"{o.server_rss or 0:.1f} MB at the end"
        )


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pages",
        description=(
            "Latency (p50, p95, max ms) of every reviewer page of the real service (`ledger "
            "serve`) on one big closed window, against the JSON receipt, on a fresh SQLite "
            "file and a throwaway PostgreSQL database. Progress goes to stderr."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--events", type=int, default=DEFAULT_EVENTS, help="admissions in the big window"
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    harness.add_postgres_url_argument(parser)
    parser.add_argument(
        "--repeats", type=int, default=DEFAULT_REPEATS, help="timed GETs of each URL"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="workload seed")
    args = parser.parse_args(argv)
    if args.events < 2 * REPEATED:
        parser.error(f"--events must be at least {2 * REPEATED} (the repeats of the first batch)")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    say(
        f"pages benchmark: one closed window of {args.events:,} admissions in batches of "
        f"{BATCH} (every {REPEAT_EVERY}th batch sends {REPEATED} items again unchanged and "
        f"{REPEATED} changed), {OPEN_WINDOWS} open windows; seed {args.seed}; `ledger serve` on "
        f"127.0.0.1, one keep-alive client, a warm-up round and {args.repeats} rounds"
    )
    say(
        "ms = one GET, request sent to body read; RATIO = the page's p50 / the JSON receipt's "
        f"p50 (for information); TARGET = every page's p95 < {TARGET_P95_MS:.0f} ms"
    )
    say(f"machine: {os.cpu_count()} CPUs, load average at start {harness.load_average()}")
    code, outcomes = harness.run_backends(
        args.backend,
        args.postgres_url,
        "bench-pages-",
        lambda databases: bench_backend(databases, args),
        report,
    )
    if code:
        return code
    say(f"\n== summary (load average at end {harness.load_average()}; compare ratios)")
    for o in outcomes:
        worst = max(o.pages, key=lambda x: x.p95)
        say(
            f"  {o.label:<8} {len(o.pages) - len(o.misses)}/{len(o.pages)} pages p95 "
            f"<{TARGET_P95_MS:.0f} ms on {o.events:,} admissions; slowest {worst.url.label} "
            f"p95 {worst.p95:.1f} ms"
            + (f"; MISS: {', '.join(x.url.label for x in o.misses)}" if o.misses else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
