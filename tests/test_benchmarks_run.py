"""The admission benchmark runs end to end at a tiny size. No timing is asserted: only that it
finishes, checks its own stored results (it exits non-zero if they are wrong) and prints its
ratio, flatness and memory lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
