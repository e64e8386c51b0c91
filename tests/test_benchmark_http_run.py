"""The HTTP load benchmark runs end to end for a short time on SQLite. No timing is asserted: only
that it finishes (it exits non-zero if any ledger request was not answered ADMITTED or the ledger's
read side disagrees) and prints its ratio lines. It uses wrk when installed, else its own Python
load generator, so it never needs to skip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = ROOT / "benchmarks" / "http.py"


def test_the_http_benchmark_runs_for_two_seconds_a_phase_on_sqlite_and_prints_its_ratio_lines() -> (
    None
):
    completed = subprocess.run(
        [sys.executable, str(BENCHMARK), "--duration", "2", "--backend", "sqlite"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = completed.stdout
    assert completed.returncode == 0, output + completed.stderr
    assert "RATIO sqlite single-event ledger/trivial req/s = " in output
    assert "RATIO sqlite batch-500 ledger/trivial events/s = " in output
    assert "CHECK single: " in output
    assert "no targets are set yet" in output
