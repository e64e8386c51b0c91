"""The admission benchmark runs end to end at a tiny size. No timing is asserted: only that it
finishes, checks its own stored results (it exits non-zero if they are wrong) and prints its
ratio, flatness and memory lines."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.nats import nats_server_binary
from tests.support.services import ADMIN_URL, missing_service, postgres_available

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = ROOT / "benchmarks" / "admission.py"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_admission_benchmark_runs_at_a_tiny_size_and_prints_its_ratio_lines(
    backend: str,
) -> None:
    if backend == "postgres":
        reason = postgres_available()
        if reason:
            missing_service(reason)  # fails under CI=true, skips loudly elsewhere
    completed = subprocess.run(
        [
            sys.executable,
            str(BENCHMARK),
            "--events",
            "2000",
            "--backend",
            backend,
            "--postgres-url",
            ADMIN_URL,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = completed.stdout
    assert completed.returncode == 0, output + completed.stderr
    assert f"RATIO {backend} ledger/baseline(a) same work" in output
    assert f"RATIO {backend} ledger/baseline(b) raw insert" in output
    assert f"FLATNESS {backend} ledger:" in output
    assert f"MEMORY {backend} ledger:" in output


def test_the_admission_benchmark_runs_with_the_nats_publisher_and_prints_its_ratio_line() -> None:
    # The script starts (and kills) a nats-server of its own: it only needs the binary.
    binary = nats_server_binary()
    if binary is None:
        missing_service("the nats-server binary is missing (the benchmark starts its own)")
    assert binary is not None
    completed = subprocess.run(
        [
            sys.executable,
            str(BENCHMARK),
            "--events",
            "2000",
            "--backend",
            "sqlite",
            "--publisher",
            "nats",
            "--nats-server",
            binary,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = completed.stdout
    assert completed.returncode == 0, output + completed.stderr
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
