"""The scrub benchmark runs end to end at a small size, as `python -m benchmarks.scrub`. No
timing is asserted: only that it finishes, checks its own results (it exits non-zero if a check
finds the untouched window broken, `ledger verify` fails, an admission is not ADMITTED or the
scrub never ran during a "with" run) and prints the lines the figures are read from."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.services import ADMIN_URL, missing_service, postgres_available


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_scrub_benchmark_runs_at_a_small_size_and_prints_its_verify_and_ratio_lines(
    backend: str,
) -> None:
    if backend == "postgres":
        reason = postgres_available()
        if reason:
            missing_service(reason)  # fails under CI=true, skips loudly elsewhere
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.scrub",
            "--events",
            "3000",
            "--admissions",
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
    assert completed.returncode == 0, completed.stdout + completed.stderr
    output = completed.stdout
    assert "window bench-scrub-closed: 3,002 events in its history" in output, output
    assert re.search(
        rf"^VERIFY {backend} check: [\d,]+ events/s \(3,002 events in ", output, re.MULTILINE
    ), output
    assert re.search(
        rf"^VERIFY {backend} ledger verify: [\d,]+ events/s \(3,002 events in ",
        output,
        re.MULTILINE,
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
