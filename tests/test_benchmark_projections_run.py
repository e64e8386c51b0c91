"""The projections benchmark runs end to end at a tiny size. No timing is asserted: only that it
finishes, checks its own results (it exits non-zero if the rebuilt read models are wrong) and
prints its ratio line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = ROOT / "benchmarks" / "projections.py"


def test_the_projections_benchmark_runs_at_a_tiny_size_and_prints_its_ratio_line() -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCHMARK), "--events", "2000", "--backend", "sqlite"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = completed.stdout
    assert completed.returncode == 0, output + completed.stderr
    assert "RATIO sqlite rebuild/raw read = " in output
    assert "(target >= 0.25: " in output
