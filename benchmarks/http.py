"""HTTP load: the real ledger service against a trivial Litestar endpoint and a hand-written
service, on one server, several servers and several workers, in one run.

    .venv/bin/python -m benchmarks.http                       # SQLite, 10 s per phase
    .venv/bin/python -m benchmarks.http --backend postgres    # a throwaway PostgreSQL database
    .venv/bin/python -m benchmarks.http --duration 2 --loadgen python --servers 1 --workers 1

What one run does (loopback only, every server and load generator is a subprocess):

* the real service, `ledger serve` (`python -m service.cli serve`), on a free port against a
  fresh database (SQLite file in a temporary directory, or a throwaway PostgreSQL database made
  with `ledger db upgrade` and dropped at the end), embedded publisher, auth off, once /health
  answers; the processes serving one database elect one leader, which alone runs the read
  side's follower (`service.leadership`);
* the ceiling: a trivial Litestar app under uvicorn (1 worker, the same uvicorn settings as
  `ledger serve`) whose POST /v1/windows/{window_id}/admissions decodes the very same body into
  a msgspec Struct and returns it;
* PostgreSQL only, the hand-written contender (`benchmarks.handwritten`): Litestar + a psycopg
  pool, one transaction per request of `INSERT ... ON CONFLICT DO NOTHING` into a table of its
  own in the same database, the same body, validated and hashed by the ledger's own `prepare`
  (`benchmarks.admission`'s baseline (a) behind HTTP);
* each driven by a load generator in its own process: `wrk` when it is installed (a generated
  Lua script makes every request's event ids unique: phase tag + wrk thread + counter + item;
  with several servers, thread n connects to the n-th port in turn, one connection a thread),
  else a small asyncio HTTP/1.1 client in a separate Python process (same requests);
* single   one new event per request, --connections (32) concurrent connections: trivial,
           ledger (1 server), hand-written, ledger on --servers (3) servers on one database
           (any request to any server; then again with each window sent to one server, as a
           router by window id would), ledger as one server with --workers (3) workers,
           trivial again;
  batch    --batch-size (500) new events per request, --batch-connections (4) connections:
           the ledger as a library (no HTTP, no read side, one caller) on the same events,
           on a database of its own, timed inside `Ledger.admit` only (making each batch's
           items is not timed); trivial, ledger, trivial again; on PostgreSQL, the ledger
           again while `ledger projections run` leads the read side, stopped (SIGSTOP) for
           the phase as if it ran on another machine (for information: the HTTP path on
           these cores with no read side); the library again;
  each ceiling (the trivial POST, the library) is the better of its two runs, so drift on a
  noisy machine favours no one;
  requests are spread over --windows (4) windows per phase. Every ledger (and hand-written)
  response must be 200 with every event ADMITTED, or 503 (nothing recorded: counted and
  printed as BUSY, not a failure), and afterwards the ledger's own read side
  must count at least as many admitted events (in-flight requests cut off at the end may add a
  few) and no duplicates or quarantines; otherwise the run exits 1;
* on PostgreSQL, for each single-event ledger configuration: rows read from the events table
  per request (pg_stat_user_tables: seq_tup_read + idx_tup_fetch, warm-up included, read once
  the statistics are flushed) and events per write transaction (the phase's events over their
  distinct xmin), the two factors of ADR 0018's ceiling;
* before each measured phase it waits (bounded) until every server is idle (CPU time of each
  server's process tree from /proc), so the ledger's projection follower catching up never
  runs during another phase.

Only the ratios are meant to be compared: the machine is noisy and shared with the load
generator. Issue 10's targets are printed after the figures they judge, PASS or MISS for this
run: single events at 32 connections on one server, ledger / trivial >= 0.4, ledger /
hand-written >= 1.5, p99 < 50 ms; 3 servers on one database >= 1 server; batches of 500 over
HTTP >= 0.7 of the ledger as a library. The batch ledger/trivial ratio is for information.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.harness import Databases, Server, note, say
from benchmarks.scaleout import (
    EventsPerCommit,
    EventsRowsRead,
    follower_elsewhere,
    leads,
    ledger_servers,
    library_batches,
    wait_idle,
)
from tests.support import ROOT
from tests.support.services import HOST

DEFAULT_MAX_REQUESTS = 1_000_000  # per phase: a count bound on top of the time bound
REQUEST_TIMEOUT_SECONDS = 30.0
CHECK_TIMEOUT_SECONDS = 60.0


# --- the request workload (one definition, used by the Lua script and the Python client) ------

EVENT_TYPE = "bench.item"


def window_name(
    tag: str, thread: int, counter: int, windows: int, server: int = 0, servers: int = 1
) -> str:
    """Any window in turn; with `servers` > 1 (routed by window), only the windows w with
    w % servers == server."""
    if servers > 1 and server < windows:
        mine = (windows - 1 - server) // servers + 1
        return f"{tag}-w{server + ((counter + thread) % mine) * servers}"
    return f"{tag}-w{(counter + thread) % windows}"


def event_json(prefix: str, item: int) -> str:
    return (
        f'{{"event_type":"{EVENT_TYPE}","event_id":"{prefix}{item}",'
        f'"payload":{{"seq":{item},"kind":"benchmark","amount_cents":1250}}}}'
    )


def request_body(tag: str, thread: int, counter: int, batch: int) -> str:
    prefix = f"{tag}-{thread}-{counter}-"
    return '{"events":[' + ",".join(event_json(prefix, i) for i in range(1, batch + 1)) + "]}"


def expected_counts(batch: int) -> str:
    """What a ledger response holds when every event of the batch was ADMITTED."""
    return f'"counts":{{"ADMITTED":{batch}}}'


WRK_SCRIPT = r"""
-- Generated by benchmarks/http.py. Arguments: batch windows tag check(ledger|none) max_per_thread
local threads = {}
local made = 0
local addrs = nil

-- BENCH_PORTS (several servers): thread n connects to the ((n - 1) % count + 1)-th port; with
-- BENCH_ROUTED=1 it sends only to the windows w of its server (w % count == its index).
function setup(thread)
  made = made + 1
  thread:set("tid", made)
  thread:set("server", 0)
  thread:set("servers", 1)
  local ports = os.getenv("BENCH_PORTS")
  if ports and ports ~= "" then
    if not addrs then
      addrs = {}
      for port in string.gmatch(ports, "%d+") do
        table.insert(addrs, wrk.lookup(wrk.host, port)[1])
      end
    end
    thread.addr = addrs[((made - 1) % #addrs) + 1]
    if os.getenv("BENCH_ROUTED") == "1" then
      thread:set("server", (made - 1) % #addrs)
      thread:set("servers", #addrs)
    end
  end
  table.insert(threads, thread)
end

ok = 0
bad_status = 0
unavailable = 0
not_admitted = 0
local counter = 0
local answered = 0
local batch, windows, tag, check, expect, max_per_thread

function init(args)
  batch = tonumber(args[1])
  windows = tonumber(args[2])
  tag = args[3]
  check = args[4] == "ledger"
  max_per_thread = tonumber(args[5])
  expect = '"counts":{"ADMITTED":' .. batch .. '}'
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local prefix = tag .. "-" .. tid .. "-" .. counter .. "-"
  local parts = {}
  for i = 1, batch do
    parts[i] = '{"event_type":"bench.item","event_id":"' .. prefix .. i ..
      '","payload":{"seq":' .. i .. ',"kind":"benchmark","amount_cents":1250}}'
  end
  local w = (counter + tid) % windows
  if servers > 1 and server < windows then
    local mine = math.floor((windows - 1 - server) / servers) + 1
    w = server + ((counter + tid) % mine) * servers
  end
  local window = tag .. "-w" .. w
  return wrk.format("POST", "/v1/windows/" .. window .. "/admissions", nil,
    '{"events":[' .. table.concat(parts, ",") .. ']}')
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then
    bad_status = bad_status + 1
    if status == 503 then
      unavailable = unavailable + 1
    end
  elseif check and not string.find(body, expect, 1, true) then
    not_admitted = not_admitted + 1
  else
    ok = ok + 1
  end
  if answered >= max_per_thread then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local good, bad, busy, missing = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    good = good + t:get("ok")
    bad = bad + t:get("bad_status")
    busy = busy + t:get("unavailable")
    missing = missing + t:get("not_admitted")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKRESULT {"requests":%.0f,"duration_s":%.6f,"ok":%.0f,"bad_status":%.0f,' ..
    '"unavailable":%.0f,"not_admitted":%.0f,"errors":%.0f,"timeouts":%.0f,"p50_ms":%.3f,' ..
    '"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, good, bad, busy, missing,
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""


# --- the ceiling: a trivial Litestar app under uvicorn ----------------------------------------

TRIVIAL_APP = '''
"""The ceiling: decode the admission body into a msgspec Struct and return it."""
import sys
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar, get, post


class Event(msgspec.Struct):
    event_type: str
    event_id: str
    payload: dict[str, Any]


class Batch(msgspec.Struct):
    events: list[Event]


@post("/v1/windows/{window_id:str}/admissions", status_code=200)
async def echo(window_id: str, data: Batch) -> Batch:
    return data


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar(route_handlers=[echo, health], debug=False)

if __name__ == "__main__":
    # The same uvicorn settings as `ledger serve`: one process, default loop and HTTP parser.
    # Started as `trivial_app.py --host 127.0.0.1 --port N`, as `ledger serve` is.
    port = int(sys.argv[sys.argv.index("--port") + 1])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
'''


# --- the Python load generator (runs in its own process) ---------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed by the server")
    status = int(status_line.split(b" ", 2)[1])
    length = None
    chunked = False
    close = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readline()
                break
            parts.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(parts)
    elif length is not None:
        body = await reader.readexactly(length)
    else:
        body = await reader.read()
        close = True
    return status, body, close


async def _python_load(spec: dict[str, Any]) -> dict[str, Any]:
    host, ports = spec["host"], spec["ports"]
    batch, windows, tag = spec["batch"], spec["windows"], spec["tag"]
    check = spec["check"] == "ledger"
    expect = expected_counts(batch).encode()
    connections = spec["connections"]
    max_requests = spec["max_requests"]
    latencies: list[float] = []
    stats = {
        "sent": 0,
        "ok": 0,
        "bad_status": 0,
        "unavailable": 0,
        "not_admitted": 0,
        "errors": 0,
        "timeouts": 0,
    }
    routed = spec["routed"] and len(ports) > 1
    start = time.perf_counter()
    deadline = start + spec["duration"]
    last_done = start

    async def connection(thread: int) -> None:
        nonlocal last_done
        reader = writer = None
        counter = 0
        port = ports[(thread - 1) % len(ports)]  # connection n to the n-th server, in turn
        try:
            while time.perf_counter() < deadline and stats["sent"] < max_requests:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                counter += 1
                stats["sent"] += 1
                server = (thread - 1) % len(ports) if routed else 0
                window = window_name(
                    tag, thread, counter, windows, server, len(ports) if routed else 1
                )
                path = f"/v1/windows/{window}/admissions"
                body = request_body(tag, thread, counter, batch).encode()
                head = (
                    f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                began = time.perf_counter()
                try:
                    writer.write(head + body)
                    await writer.drain()
                    assert reader is not None
                    status, answer, close = await asyncio.wait_for(
                        _read_response(reader), REQUEST_TIMEOUT_SECONDS
                    )
                except TimeoutError:
                    stats["timeouts"] += 1
                    writer.close()
                    writer = None
                    continue
                except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError):
                    stats["errors"] += 1
                    writer.close()
                    writer = None
                    continue
                finished = time.perf_counter()
                latencies.append(finished - began)
                last_done = max(last_done, finished)
                if status != 200:
                    stats["bad_status"] += 1
                    stats["unavailable"] += status == 503
                elif check and expect not in answer:
                    stats["not_admitted"] += 1
                else:
                    stats["ok"] += 1
                if close:
                    writer.close()
                    writer = None
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(connection(t) for t in range(1, connections + 1)))
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "duration_s": max(last_done - start, 1e-9),
        **{k: v for k, v in stats.items() if k != "sent"},
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
    }


def loadgen_worker(spec_json: str) -> int:
    result = asyncio.run(_python_load(json.loads(spec_json)))
    print("PYRESULT " + json.dumps(result), flush=True)
    return 0


# --- measurements ------------------------------------------------------------------------------


@dataclass
class Phase:
    workload: str
    target: str
    connections: int
    batch: int
    result: dict[str, Any]
    tag: str = ""  # the phase's windows are f"{tag}-w{n}"
    warmup_requests: int = 0
    rows_read: int | None = None  # from the events table, warm-up and measured run together
    written: tuple[int, int] | None = None  # (events, transactions), warm-up and measured run

    @property
    def rows_per_request(self) -> float | None:
        if self.rows_read is None:
            return None
        return harness.ratio(self.rows_read, int(self.result["requests"]) + self.warmup_requests)

    @property
    def rps(self) -> float:
        return float(self.result["requests"]) / float(self.result["duration_s"])

    @property
    def events_per_s(self) -> float:
        return self.rps * self.batch

    @property
    def failures(self) -> int:
        """Answers that break the contract or the run: a 503 is not one of them (it says
        nothing was recorded, and a producer sends again), so it is reported, not failed."""
        r = self.result
        wrong = r["bad_status"] - r.get("unavailable", 0)
        return int(wrong + r["not_admitted"] + r["errors"] + r["timeouts"])


class LoadGenerator:
    def __init__(self, kind: str, logdir: Path, max_requests: int) -> None:
        self.kind = kind
        self.logdir = logdir
        self.max_requests = max_requests
        self.script = logdir / "admissions.lua"
        self.script.write_text(WRK_SCRIPT)

    def describe(self) -> str:
        if self.kind == "wrk":
            probe = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
            version = (probe.stdout + probe.stderr).strip().splitlines()
            first = version[0].split(" Copyright")[0] if version else "wrk"
            return f"{first} (own process, Lua-generated bodies)"
        why = "wrk not found" if shutil.which("wrk") is None else "--loadgen python"
        return f"asyncio HTTP/1.1 client in a separate Python process ({why})"

    def run(
        self,
        ports: Sequence[int],
        *,
        duration: float,
        connections: int,
        batch: int,
        windows: int,
        tag: str,
        check: str,
        routed: bool = False,
    ) -> dict[str, Any]:
        env = dict(os.environ)
        if self.kind == "wrk":
            threads = max(1, min(os.cpu_count() or 1, connections))
            if len(ports) > 1:
                # One connection per thread, threads spread over the servers' ports in turn.
                threads = connections
                env["BENCH_PORTS"] = ",".join(str(p) for p in ports)
                env["BENCH_ROUTED"] = "1" if routed else "0"
            per_thread = max(1, self.max_requests // threads)
            argv = [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                f"--timeout={REQUEST_TIMEOUT_SECONDS:.0f}s",
                "-s",
                str(self.script),
                f"http://{HOST}:{ports[0]}/",
                "--",
                str(batch),
                str(windows),
                tag,
                check,
                str(per_thread),
            ]
            marker = "WRKRESULT "
        else:
            spec = {
                "host": HOST,
                "ports": list(ports),
                "routed": routed,
                "duration": duration,
                "connections": connections,
                "batch": batch,
                "windows": windows,
                "tag": tag,
                "check": check,
                "max_requests": self.max_requests,
            }
            argv = [sys.executable, "-m", "benchmarks.http", "--loadgen-worker", json.dumps(spec)]
            marker = "PYRESULT "
        completed = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=duration + REQUEST_TIMEOUT_SECONDS + 60,
        )
        for line in completed.stdout.splitlines():
            if line.startswith(marker):
                return dict(json.loads(line[len(marker) :]))
        raise RuntimeError(
            f"load generator failed (exit {completed.returncode}):\n"
            f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
        )


def pick_loadgen(choice: str) -> str:
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if choice == "wrk" and not shutil.which("wrk"):
        raise SystemExit("error: --loadgen wrk but wrk is not installed (apt-get install -y wrk)")
    return choice


# --- the ledger's own count -----------------------------------------------------------------


def admitted_server_side(port: int, windows: list[str]) -> dict[str, int]:
    totals = {"admitted": 0, "duplicates": 0, "quarantined": 0, "publish_unknown": 0}
    for window in windows:
        try:
            with urllib.request.urlopen(
                f"http://{HOST}:{port}/v1/windows/{window}", timeout=10
            ) as answer:
                counts = json.load(answer)["counts"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                continue
            raise
        for key in totals:
            totals[key] += int(counts[key])
    return totals


# --- the run -----------------------------------------------------------------------------------


def fmt_ms(value: float) -> str:
    return f"{value:,.1f}"


def print_table(phases: list[Phase]) -> None:
    say(
        f"{'workload':<24} {'conns':>5} {'target':<27} {'req/s':>10} {'events/s':>10} "
        f"{'p50 ms':>9} {'p99 ms':>9} {'requests':>9}"
    )
    for p in phases:
        say(
            f"{p.workload:<24} {p.connections:>5} {p.target:<27} {p.rps:>10,.0f} "
            f"{p.events_per_s:>10,.0f} {fmt_ms(p.result['p50_ms']):>9} "
            f"{fmt_ms(p.result['p99_ms']):>9} {p.result['requests']:>9,}"
        )


def run(args: argparse.Namespace) -> int:
    kind = pick_loadgen(args.loadgen)
    with Databases(args.backend, args.postgres_url, "ledger-http-bench-") as databases:
        note(harness.ledger_db_upgrade(databases.url))
        trivial_app = databases.dir / "trivial_app.py"
        trivial_app.write_text(TRIVIAL_APP)
        with ExitStack() as stack:
            trivial = stack.enter_context(
                harness.serving("trivial", databases.url, [sys.executable, str(trivial_app)])
            )
            handwritten = None
            if args.backend == "postgres":
                handwritten = stack.enter_context(
                    harness.serving(
                        "hand-written",
                        databases.url,
                        [sys.executable, "-m", "benchmarks.handwritten"],
                    )
                )
            loadgen = LoadGenerator(kind, databases.dir, args.max_requests)
            return Bench(args, loadgen, databases, trivial, handwritten).run()


WORKLOADS = ("single", "batch")

# Issue 10's targets, printed with PASS or MISS after the figures (ratios are of one run).
TARGET_TRIVIAL = 0.4  # single events: ledger / trivial POST, req/s
TARGET_HAND_WRITTEN = 1.5  # single events: ledger / hand-written service, req/s
TARGET_P99_MS = 50.0  # single events: the ledger's p99, one server
TARGET_SERVERS = 1.0  # single events: N servers on one database / one server, req/s
TARGET_HTTP_LIBRARY = 0.7  # batches: over HTTP / the ledger as a library, events/s
ELSEWHERE = "ledger, read side elsewhere"


@dataclass
class Bench:
    """One run: every phase, in order, on the servers alive at the time."""

    args: argparse.Namespace
    loadgen: LoadGenerator
    databases: Databases
    trivial: Server
    handwritten: Server | None
    run_tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    phases: list[Phase] = field(default_factory=list)  # every phase measured
    ledger_phases: list[Phase] = field(default_factory=list)  # those whose read side is checked
    read_side: tuple[bool, str] = (False, "CHECK not run")
    rows: EventsRowsRead | None = None
    commits: EventsPerCommit | None = None
    last_rows: int | None = None

    def __post_init__(self) -> None:
        self.rows = EventsRowsRead(self.databases.url)
        self.commits = EventsPerCommit(self.databases.url)

    @property
    def others(self) -> list[Server]:
        return [self.trivial, *([self.handwritten] if self.handwritten else [])]

    def run(self) -> int:
        args = self.args
        say(
            f"HTTP load benchmark, backend {args.backend}: the ledger service "
            f"(`ledger serve`, embedded publisher, auth off) against a trivial Litestar "
            f"POST echoing a msgspec Struct"
            + (
                " and a hand-written Litestar + psycopg pool service (one transaction per "
                "request, INSERT ... ON CONFLICT DO NOTHING, the same validation and hashing)"
                if self.handwritten
                else ""
            )
            + "; uvicorn, 1 worker each unless said, 127.0.0.1"
        )
        say(
            f"load generator: {self.loadgen.describe()}; {args.duration:g} s per phase; "
            f"{os.cpu_count()} cores"
        )
        labels = {"single": "single event POST", "batch": f"batch of {args.batch_size} POST"}
        single = self.single_phases(labels["single"])
        batch, libraries = self.batch_phases(labels["batch"])
        self.report(labels, single, batch, libraries)
        failed = say_failures(self.phases)
        good, line = self.read_side
        say(line)
        failed = not good or failed
        say("")
        say(
            "NOTE: figures are as measured in this run on this machine (noisy, 2 cores shared "
            "by the servers and the load generator); issue 10's targets are printed after the "
            "figures they judge (PASS or MISS, for this run only: ratios move by 10% or more "
            "from run to run here). Compare the RATIO lines, not the absolute figures. The "
            "ledger's handler "
            "awaits its group's commit (ADR 0019) and the leader's projection follower runs "
            "in a child process (ADR 0020) during its phases; the trivial handler is async "
            "and does no I/O."
        )
        return 1 if failed else 0

    # --- phases ----------------------------------------------------------------------------

    def single_phases(self, label: str) -> dict[str, Any]:
        args = self.args
        out: dict[str, Any] = {}
        shape = ("single", args.connections, 1)
        ceilings = [self.phase(label, [self.trivial], [], shape, "trivial", "1")]
        with ledger_servers(self.databases.url, 1) as (ledger,):
            out["ledger"] = self.phase(label, [ledger], [ledger], shape, "ledger", rows=True)
            if self.handwritten is not None:
                out["hand"] = self.phase(label, [self.handwritten], [ledger], shape, "hand-written")
            if args.servers > 1:
                with ledger_servers(self.databases.url, args.servers - 1, name="ledger") as more:
                    note(f"... {args.servers} servers; the read side is led by {leads([ledger])}")
                    servers = [ledger, *more]
                    out["servers"] = self.phase(
                        label, servers, servers, shape, f"ledger {args.servers} servers", rows=True
                    )
                    # The same servers, each window sent to one server only (a router by
                    # window id in front): no two processes write one window.
                    out["routed"] = self.phase(
                        label,
                        servers,
                        servers,
                        shape,
                        f"ledger {args.servers} servers routed",
                        rows=True,
                        routed=True,
                    )
        if args.workers > 1:
            with ledger_servers(self.databases.url, 1, args.workers) as (multi,):
                note(f"... {args.workers} workers; the read side is led by {leads([multi])}")
                out["workers"] = self.phase(
                    label, [multi], [multi], shape, f"ledger {args.workers} workers", rows=True
                )
        ceilings.append(self.phase(label, [self.trivial], [], shape, "trivial", "2"))
        out["ceilings"] = ceilings
        out["best"] = max(ceilings, key=lambda p: p.rps)
        return out

    def batch_phases(self, label: str) -> tuple[dict[str, Any], list[tuple[int, float]]]:
        args = self.args
        out: dict[str, Any] = {}
        shape = ("batch", args.batch_connections, args.batch_size)
        # The library path runs before and after the HTTP phases (the better run is used, as
        # for the trivial POST): one run of it swung by half from run to run here.
        libraries = [self.library_phase(label, "1")]
        with ledger_servers(self.databases.url, 1) as (ledger,):
            ceilings = [self.phase(label, [self.trivial], [ledger], shape, "trivial", "1")]
            out["ledger"] = self.phase(label, [ledger], [ledger], shape, "ledger")
            ceilings.append(self.phase(label, [self.trivial], [ledger], shape, "trivial", "2"))
            self.read_side = check_read_side(ledger, self.ledger_phases, args.windows)
        if self.handwritten is not None:  # PostgreSQL: another process can lead the read side
            out["elsewhere"] = self.elsewhere_phase(label, shape)
        libraries.append(self.library_phase(label, "2"))
        out["ceilings"] = ceilings
        out["best"] = max(ceilings, key=lambda p: p.rps)
        return out, libraries

    def elsewhere_phase(self, label: str, shape: tuple[str, int, int]) -> Phase:
        """Batches over HTTP to one server while `ledger projections run` leads the read side,
        stopped (SIGSTOP) for the phase as if it ran on another machine, then resumed and
        checked like the others: what the HTTP path does on these cores with no read side."""
        url = self.databases.url
        with follower_elsewhere(url) as follower, ledger_servers(url, 1) as (ledger,):
            if leads([ledger]) != "none of these":
                raise RuntimeError(f"the server leads the read side:\n{ledger.tail()}")
            wait_idle([*self.others, ledger, follower])
            follower.pause()
            try:
                phase = self.phase(label, [ledger], [ledger], shape, ELSEWHERE)
            finally:
                follower.resume()
            # Read-your-writes makes a server wait for a window the read side lacks: let the
            # follower catch up first (the check's requests would time out behind it).
            note(f"... the read side catching up: {wait_idle([follower]):.1f} s")
            good, line = check_read_side(ledger, [phase], self.args.windows)
        was_good, was = self.read_side
        self.read_side = (was_good and good, f"{was}; {line.removeprefix('CHECK ')}")
        return phase

    def library_phase(self, label: str, run_no: str) -> tuple[int, float]:
        """The ledger as a library on the batch workload's events, on a database of its own."""
        args = self.args
        wait_idle(self.others)
        note(f"... {label}, the ledger as a library run {run_no} (one caller, its own database)")
        return library_batches(
            self.databases.fresh(f"library{run_no}"),
            batch=args.batch_size,
            windows=args.windows,
            seconds=args.duration,
            warmup=args.warmup,
        )

    def phase(
        self,
        label: str,
        targets: list[Server],
        ledgers: list[Server],
        shape: tuple[str, int, int],
        target: str,
        run_no: str = "",
        *,
        rows: bool = False,
        routed: bool = False,
    ) -> Phase:
        """One measured phase on `targets` (after an unmeasured warm-up), once every server
        alive is idle; rows read from the events table counted over both when asked."""
        args = self.args
        workload, connections, batch = shape
        alive = [*self.others, *ledgers]
        slug = "".join(ch for ch in target if ch.isalnum())
        tag = f"{workload}-{slug}{run_no}-{self.run_tag}"
        phase = Phase(workload, target, connections, batch, {}, tag)
        is_ledger = target.startswith("ledger")
        check = "none" if target == "trivial" else "ledger"
        ports = [s.port for s in targets]
        before = self.rows_now() if rows else None
        assert self.commits is not None
        first = self.commits.head() if rows else None
        if args.warmup > 0:
            wait_idle(alive)
            warm = self.loadgen.run(
                ports,
                duration=args.warmup,
                connections=connections,
                batch=batch,
                windows=args.windows,
                tag=f"warm-{tag}",
                check="none",
                routed=routed,
            )
            phase.warmup_requests = int(warm["requests"])
        waited = wait_idle(alive)
        note(
            f"... {label}, {target}{run_no and ' run ' + run_no}, "
            f"{connections} connections (waited {waited:.1f} s for idle servers)"
        )
        phase.result = self.loadgen.run(
            ports,
            duration=args.duration,
            connections=connections,
            batch=batch,
            windows=args.windows,
            tag=tag,
            check=check,
            routed=routed,
        )
        for each in alive:
            each.check_alive()
        if before is not None:
            wait_idle(alive)
            self.last_rows = after = self.rows_now(settled=True)
            phase.rows_read = None if after is None else after - before
        if first is not None:
            last = self.commits.head()
            assert last is not None
            phase.written = self.commits.between(first, last)
        self.phases.append(phase)
        if is_ledger:
            self.ledger_phases.append(phase)
        return phase

    def rows_now(self, *, settled: bool = False) -> int | None:
        assert self.rows is not None
        if self.last_rows is not None and not settled:
            return self.last_rows  # nothing has read the events table since
        self.last_rows = self.rows.settled()
        return self.last_rows

    # --- the figures -------------------------------------------------------------------------

    def report(
        self,
        labels: dict[str, str],
        single: dict[str, Any],
        batch: dict[str, Any],
        libraries: list[tuple[int, float]],
    ) -> None:
        args, b = self.args, self.args.backend
        rows: list[Phase] = []
        for key, part in (("single", single), ("batch", batch)):
            top = part["best"]
            best = Phase(labels[key], "trivial (best)", top.connections, top.batch, top.result)
            rows.append(best)
            for name in ("ledger", "hand", "servers", "routed", "workers", "elsewhere"):
                if name in part:
                    p = part[name]
                    target = f"{p.target} {b}" if name == "ledger" else p.target
                    rows.append(Phase(labels[key], target, p.connections, p.batch, p.result))
        say("")
        print_table(rows)
        say("")
        for key, part in (("single", single), ("batch", batch)):
            runs = ", ".join(f"{p.rps:,.0f}" for p in part["ceilings"])
            say(f"trivial {key} runs (before, after the ledger): {runs} req/s; best used")
        led, top = single["ledger"], single["best"]
        say("")
        ledger_trivial = harness.ratio(led.rps, top.rps)
        harness.say_ratio(
            b,
            "single-event ledger/trivial req/s",
            ledger_trivial,
            f"(p50 {led.result['p50_ms']:.1f} vs {top.result['p50_ms']:.1f} ms, "
            f"p99 {led.result['p99_ms']:.1f} vs {top.result['p99_ms']:.1f} ms, "
            f"{led.connections} connections) "
            f"{harness.target_note(ledger_trivial, TARGET_TRIVIAL)}",
            digits=3,
            gap=" ",
        )
        blg, btop = batch["ledger"], batch["best"]
        harness.say_ratio(
            b,
            f"batch-{args.batch_size} ledger/trivial events/s",
            harness.ratio(blg.events_per_s, btop.events_per_s),
            f"({blg.events_per_s:,.0f} vs {btop.events_per_s:,.0f} events/s, "
            f"{blg.connections} connections) (for information)",
            digits=3,
            gap=" ",
        )
        if "hand" in single:
            hand = single["hand"]
            ledger_hand = harness.ratio(led.rps, hand.rps)
            harness.say_ratio(
                b,
                "single-event ledger/hand-written req/s",
                ledger_hand,
                f"({led.rps:,.0f} vs {hand.rps:,.0f} req/s; p50 {led.result['p50_ms']:.1f} vs "
                f"{hand.result['p50_ms']:.1f} ms, p99 {led.result['p99_ms']:.1f} vs "
                f"{hand.result['p99_ms']:.1f} ms, {led.connections} connections) "
                f"{harness.target_note(ledger_hand, TARGET_HAND_WRITTEN)}",
                digits=3,
                gap=" ",
            )
        say(
            f"LATENCY {b} single-event ledger: p50 {led.result['p50_ms']:.1f} ms, "
            f"p99 {led.result['p99_ms']:.1f} ms, max {led.result['max_ms']:.1f} ms "
            f"({led.connections} connections, 1 server) (target < {TARGET_P99_MS:g} ms: "
            f"{'PASS' if led.result['p99_ms'] < TARGET_P99_MS else 'MISS'})"
        )
        if "servers" in single:
            many = single["servers"]
            value = harness.ratio(many.rps, led.rps)
            harness.say_ratio(
                b,
                f"single-event {args.servers} servers/1 server req/s",
                value,
                f"({many.rps:,.0f} vs {led.rps:,.0f} req/s; p99 {many.result['p99_ms']:.1f} vs "
                f"{led.result['p99_ms']:.1f} ms) {harness.target_note(value, TARGET_SERVERS)}",
                gap=" ",
            )
        if "routed" in single:
            routed = single["routed"]
            harness.say_ratio(
                b,
                f"single-event {args.servers} servers routed by window/1 server req/s",
                harness.ratio(routed.rps, led.rps),
                f"({routed.rps:,.0f} vs {led.rps:,.0f} req/s; p99 "
                f"{routed.result['p99_ms']:.1f} vs {led.result['p99_ms']:.1f} ms; each window "
                f"sent to one server) (for information)",
                gap=" ",
            )
        if "workers" in single:
            wk = single["workers"]
            harness.say_ratio(
                b,
                f"single-event {args.workers} workers/1 worker req/s",
                harness.ratio(wk.rps, led.rps),
                f"({wk.rps:,.0f} vs {led.rps:,.0f} req/s; p99 {wk.result['p99_ms']:.1f} vs "
                f"{led.result['p99_ms']:.1f} ms) (for information)",
                gap=" ",
            )
        for name in ("ledger", "servers", "routed", "workers"):
            if name in single:
                say_rows(b, single[name])
        library_rates = [harness.per_second(events, seconds) for events, seconds in libraries]
        runs = ", ".join(f"{rate:,.0f}" for rate in library_rates)
        say(f"library batch runs (before, after the ledger): {runs} events/s; best used")
        library_rate = max(library_rates)
        http_library = harness.ratio(blg.events_per_s, library_rate)
        harness.say_ratio(
            b,
            f"batch-{args.batch_size} HTTP/library events/s",
            http_library,
            f"(HTTP {blg.events_per_s:,.0f} events/s at {blg.connections} connections vs the "
            f"ledger as a library {library_rate:,.0f} events/s, one caller, no read side) "
            f"{harness.target_note(http_library, TARGET_HTTP_LIBRARY)}",
            gap=" ",
        )
        if "elsewhere" in batch:
            far = batch["elsewhere"]
            harness.say_ratio(
                b,
                f"batch-{args.batch_size} HTTP read side elsewhere/library events/s",
                harness.ratio(far.events_per_s, library_rate),
                f"(HTTP {far.events_per_s:,.0f} events/s; the read side led by `ledger "
                "projections run`, stopped for the phase as if on another machine, then "
                "caught up; for information: the HTTP path on these cores with no read side)",
                gap=" ",
            )


def say_rows(backend: str, phase: Phase) -> None:
    per = phase.rows_per_request
    if per is None:
        say(f"ROWS {backend} single-event {phase.target}: not counted (SQLite keeps no statistics)")
        return
    if phase.written is not None:
        events, transactions = phase.written
        per_commit = harness.ratio(events, transactions)
        say(
            f"COMMITS {backend} single-event {phase.target}: {per_commit:.2f} events per write "
            f"transaction, {harness.ratio(phase.events_per_s, per_commit):,.0f} commits/s "
            f"({events:,} events in {transactions:,} transactions, warm-up included)"
        )
    requests = int(phase.result["requests"]) + phase.warmup_requests
    say(
        f"ROWS {backend} single-event {phase.target}: {per:.2f} rows read from "
        f"ledger_events per request ({phase.rows_read:,} rows over {requests:,} requests, "
        "warm-up included; the read side's follower reads each new event once)"
    )


def say_failures(phases: list[Phase]) -> bool:
    """Every ledger (and hand-written) request must have been answered ADMITTED (or 503: nothing
    recorded, counted in a BUSY line), every trivial one 200."""
    failed = False
    for phase in phases:
        busy = int(phase.result.get("unavailable", 0))
        if busy:
            say(
                f"BUSY {phase.workload} {phase.target}: {busy:,} of "
                f"{int(phase.result['requests']):,} requests answered 503 (nothing recorded; "
                "a producer sends them again)"
            )
        if phase.failures:
            failed = True
            say(f"FAILED {phase.workload} {phase.target}: {phase.result}")
    return failed


def check_read_side(ledger: Server, phases: list[Phase], windows: int) -> tuple[bool, str]:
    """The ledger's read side (all servers share one database: any of them answers) must count
    at least every event answered ADMITTED, and no duplicates, quarantines or unknown
    publishes."""
    checks = []
    all_good = True
    for phase in phases:
        confirmed = int(phase.result["ok"]) * phase.batch
        names = [f"{phase.tag}-w{w}" for w in range(windows)]
        deadline = time.monotonic() + CHECK_TIMEOUT_SECONDS
        while True:
            totals = admitted_server_side(ledger.port, names)
            if totals["admitted"] >= confirmed or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        good = (
            totals["admitted"] >= confirmed
            and totals["duplicates"] == 0
            and totals["quarantined"] == 0
            and totals["publish_unknown"] == 0
        )
        all_good = all_good and good
        what = phase.workload if phase.target == "ledger" else f"{phase.workload} {phase.target}"
        checks.append(
            f"{what}: {totals['admitted']:,} admitted on the read side for "
            f"{confirmed:,} answered ADMITTED, {totals['duplicates']} duplicates, "
            f"{totals['quarantined']} quarantined, {totals['publish_unknown']} "
            f"publish-unknown: {'ok' if good else 'WRONG'}"
        )
    return all_good, "CHECK " + "; ".join(checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.http", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument(
        "--connections", type=int, default=32, help="concurrent connections, single-event workload"
    )
    parser.add_argument(
        "--batch-connections", type=int, default=4, help="concurrent connections, batch workload"
    )
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--windows", type=int, default=4, help="windows per phase")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--servers",
        type=int,
        default=3,
        help="also measure this many `ledger serve` on one database against 1 (1: do not)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=3,
        help="also measure one `ledger serve --workers N` against 1 worker (1: do not)",
    )
    harness.add_postgres_url_argument(parser)
    parser.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto: wrk when installed, else the Python client",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of unmeasured load before each phase (0: none)",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=DEFAULT_MAX_REQUESTS,
        help="count bound per phase, on top of --duration",
    )
    parser.add_argument("--loadgen-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loadgen_worker:
        return loadgen_worker(args.loadgen_worker)
    if not 1 <= args.batch_size <= 1000:
        parser.error("--batch-size must be 1..1000 (the API's limit)")
    if args.duration <= 0 or args.connections < 1 or args.batch_connections < 1:
        parser.error("--duration and connection counts must be positive")
    if args.servers < 1 or args.workers < 1:
        parser.error("--servers and --workers must be 1 or more")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
