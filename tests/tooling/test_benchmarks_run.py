"""The benchmarks (admission, cold, http, pages, pending, projections, scrub) run end to end at a
tiny size, as `python -m benchmarks.NAME`. No timing is asserted: only that each finishes,
checks its own results (it exits non-zero if they are wrong: stored identities, the rebuilt
read models, a ledger request not answered ADMITTED, a scrub that never ran, a page that does
not answer what it must) and prints the lines the README quotes (ratios, flatness, memory,
verify throughput, page latency targets)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.nats import nats_server_binary
from tests.support.services import ADMIN_URL, missing_service, postgres_available

ROOT = Path(__file__).resolve().parents[2]


def require_backend(backend: str) -> None:
    """PostgreSQL must be there for a postgres run: fails under CI=true, skips loudly
    elsewhere."""
    if backend == "postgres":
        reason = postgres_available()
        if reason:
            missing_service(reason)


def run_benchmark(name: str, *args: str, timeout: float = 300) -> str:
    """`python -m benchmarks.NAME ARGS...` from the project root; its stdout once it exited 0."""
    completed = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_admission_benchmark_runs_at_a_tiny_size_and_prints_its_ratio_lines(
    backend: str,
) -> None:
    require_backend(backend)
    output = run_benchmark(
        "admission", "--events", "2000", "--backend", backend, "--postgres-url", ADMIN_URL
    )
    assert f"RATIO {backend} ledger/baseline(a) same work" in output
    assert f"RATIO {backend} ledger/baseline(b) raw insert" in output
    assert f"FLATNESS {backend} ledger:" in output
    assert f"MEMORY {backend} ledger:" in output


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_pending_benchmark_runs_at_a_tiny_size_and_prints_its_ratio_lines(
    backend: str,
) -> None:
    require_backend(backend)
    output = run_benchmark(
        "pending",
        *("--pending", "300", "--clients", "4", "--duration", "0.5"),
        *("--backend", backend, "--postgres-url", ADMIN_URL),
    )
    assert re.search(
        rf"^RATIO {backend} writer CPU a request, clear/outage = \d+\.\d\d "
        r"\(target >= 0\.8: (PASS|MISS)\)$",
        output,
        re.MULTILINE,
    ), output
    assert re.search(
        rf"^RATIO {backend} requests/s outage/clear = \d+\.\d\d \(for information\)$",
        output,
        re.MULTILINE,
    ), output


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_admission_benchmark_with_cli_runs_ledger_admit_and_prints_its_ratio_line(
    backend: str,
) -> None:
    require_backend(backend)
    output = run_benchmark(
        "admission",
        *("--cli", "--events", "1200", "--backend", backend, "--postgres-url", ADMIN_URL),
    )
    # Two runs of the real command, each of which printed the workload's counts (else exit 3).
    runs = re.findall(
        r"^  run: ledger admit +[\d,]+ events/s  \(1,200 lines in ", output, re.MULTILINE
    )
    assert len(runs) == 2, output
    assert re.search(
        rf"^RATIO {backend} ledger-admit/library = \d+\.\d\d  \(target >= 0\.8: (PASS|MISS)\)$",
        output,
        re.MULTILINE,
    ), output
    assert re.search(rf"^MEMORY {backend} ledger admit: peak RSS ", output, re.MULTILINE), output


def test_the_admission_benchmark_runs_with_the_nats_publisher_and_prints_its_ratio_line() -> None:
    # The benchmark starts (and kills) a nats-server of its own: it only needs the binary.
    binary = nats_server_binary()
    if binary is None:
        missing_service("the nats-server binary is missing (the benchmark starts its own)")
    assert binary is not None
    output = run_benchmark(
        "admission",
        "--events",
        "2000",
        "--backend",
        "sqlite",
        "--publisher",
        "nats",
        "--nats-server",
        binary,
    )
    assert re.search(
        r"^RATIO sqlite ledger\+nats/raw jetstream = \d+\.\d\d \(target >= 0\.5: (PASS|MISS)\)$",
        output,
        re.MULTILINE,
    ), output
    assert re.search(
        r"^NATS sqlite: ledger embedded [\d,]+ admissions/s; ledger\+nats [\d,]+ admissions/s; "
        r"raw jetstream [\d,]+ admissions/s",
        output,
        re.MULTILINE,
    ), output
    assert "ledger+nats stream BENCH_SQLITE_LEDGER_" in output  # the stream holds what it admitted


def test_the_http_benchmark_runs_for_two_seconds_a_phase_on_sqlite_and_prints_its_ratio_lines() -> (
    None
):
    # wrk when installed, else the benchmark's own Python load generator: it never needs to skip.
    output = run_benchmark("http", "--duration", "2", "--backend", "sqlite", timeout=600)
    assert re.search(
        r"^RATIO sqlite single-event ledger/trivial req/s = \d+\.\d+ .*"
        r"\(target >= 0\.4: (PASS|MISS)\)$",
        output,
        re.MULTILINE,
    ), output
    assert re.search(
        r"^LATENCY sqlite single-event ledger: .* \(target < 50 ms: (PASS|MISS)\)$",
        output,
        re.MULTILINE,
    ), output
    assert "RATIO sqlite batch-500 ledger/trivial events/s = " in output
    assert "CHECK single: " in output
    assert "issue 10's targets are printed" in output


@pytest.mark.postgres
def test_the_http_benchmark_on_postgresql_prints_its_hand_written_scale_out_and_rows_lines() -> (
    None
):
    reason = postgres_available()
    if reason:
        missing_service(reason)  # fails under CI=true, skips loudly elsewhere
    output = run_benchmark(
        "http",
        *("--duration", "1", "--warmup", "0.5", "--backend", "postgres"),
        *("--servers", "2", "--workers", "2", "--postgres-url", ADMIN_URL),
        timeout=900,
    )
    number = r"\d+\.\d+"
    for line in (
        rf"^RATIO postgres single-event ledger/trivial req/s = {number} ",
        rf"^RATIO postgres single-event ledger/hand-written req/s = {number} \([\d,]+ vs [\d,]+ "
        r".*\(target >= 1\.5: (PASS|MISS)\)$",
        rf"^LATENCY postgres single-event ledger: p50 {number} ms, p99 {number} ms",
        rf"^RATIO postgres single-event 2 servers/1 server req/s = {number} .*"
        r"\(target >= 1\.0: (PASS|MISS)\)$",
        rf"^RATIO postgres single-event 2 servers routed by window/1 server req/s = {number} ",
        rf"^RATIO postgres single-event 2 workers/1 worker req/s = {number} ",
        rf"^COMMITS postgres single-event ledger: {number} events per write transaction, "
        r"[\d,]+ commits/s",
        rf"^ROWS postgres single-event ledger: {number} rows read from ledger_events per request",
        rf"^ROWS postgres single-event ledger 2 servers: {number} rows read ",
        rf"^ROWS postgres single-event ledger 2 workers: {number} rows read ",
        r"^library batch runs \(before, after the ledger\): [\d,]+, [\d,]+ events/s; best used$",
        rf"^RATIO postgres batch-500 HTTP/library events/s = {number} \(HTTP [\d,]+ events/s"
        r".*\(target >= 0\.7: (PASS|MISS)\)$",
        rf"^RATIO postgres batch-500 HTTP read side elsewhere/library events/s = {number} "
        r"\(HTTP [\d,]+ events/s; the read side led by `ledger projections run`",
    ):
        assert re.search(line, output, re.MULTILINE), (line, output)
    assert re.search(r"^CHECK single: .*single ledger 2 servers: .*: ok", output, re.MULTILINE)
    # The phase's events reach the read side once the paused follower resumes.
    assert re.search(r"; batch ledger, read side elsewhere: [\d,]+ admitted .*: ok$", output, re.M)


def test_the_projections_benchmark_runs_at_a_tiny_size_and_prints_its_ratio_line() -> None:
    output = run_benchmark("projections", "--events", "2000", "--backend", "sqlite")
    assert "RATIO sqlite rebuild/raw read = " in output
    assert "(target >= 0.25: " in output


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_scrub_benchmark_runs_at_a_small_size_and_prints_its_verify_and_ratio_lines(
    backend: str,
) -> None:
    require_backend(backend)
    output = run_benchmark(
        "scrub",
        *("--events", "3000", "--admissions", "2000", "--backend", backend),
        *("--postgres-url", ADMIN_URL),
    )
    assert "window bench-scrub-closed: 3,002 events in its history" in output, output
    for what in ("check", "ledger verify"):
        assert re.search(
            rf"^VERIFY {backend} {what}: [\d,]+ events/s \(3,002 events in ", output, re.MULTILINE
        ), output
    assert re.search(
        rf"^RATIO {backend} admissions with scrub/without = \d+\.\d\d  "
        r"\(target >= 0\.8: (PASS|MISS)\)$",
        output,
        re.MULTILINE,
    ), output
    # The scrub did run during both "with" runs.
    started = re.findall(r"scrub checks of the big window started (\d+)", output)
    assert len(started) == 2 and all(int(n) >= 1 for n in started), output


PAGES = (
    "/",
    "/?gate=PASS",
    "/?q=pages-big",
    "/windows/W",
    "/windows/W/quarantine",
    "/windows/W/quarantine?after=<cursor>",
    "/windows/W/history",
    "/windows/W/history?after=1000",
    "/windows/W/history?after=",  # after all but the last 50 events of the history
    "/windows/W/receipt.md",
)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_pages_benchmark_runs_at_a_tiny_size_and_prints_its_ratio_and_target_lines(
    backend: str,
) -> None:
    require_backend(backend)
    output = run_benchmark(
        "pages",
        *("--events", "2000", "--repeats", "3", "--backend", backend),
        *("--postgres-url", ADMIN_URL),
    )
    for page in PAGES:
        label = re.escape(page) + (r"\d+" if page.endswith("=") else "")
        assert re.search(
            rf"^RATIO {backend} {label} p50/JSON receipt p50 = \d+\.\d\d  \(for information\)$",
            output,
            re.MULTILINE,
        ), (page, output)
        assert re.search(
            rf"^TARGET {backend} {label} p95 <300 ms: (PASS|MISS) \([\d.]+ ms\)$",
            output,
            re.MULTILINE,
        ), (page, output)
    assert len(re.findall(rf"^TARGET {backend} ", output, re.MULTILINE)) == len(PAGES), output


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_cold_start_benchmark_runs_at_a_tiny_size_and_prints_its_target_lines(
    backend: str,
) -> None:
    require_backend(backend)
    output = run_benchmark(
        "cold",
        *("--events", "1200", "--race-admissions", "20", "--snapshot-interval", "100"),
        *("--backend", backend, "--postgres-url", ADMIN_URL),
    )
    for target in (
        "fresh process big - new",
        "fresh process peak RSS",
        "restarted server first admission into the big window",
        "slowest admission in the race",
    ):
        assert re.search(rf"^TARGET {backend} {target} .*: (PASS|MISS)$", output, re.M), (
            target,
            output,
        )
    assert re.search(rf"^RACE {backend} 40 admissions by two ledgers: \d+ re-runs", output, re.M)
