"""The style promises: ruff and mypy (strict) are clean on the shipped packages."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT

PACKAGES = ["ledger", "projections", "api", "service", "migrations"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_finds_nothing_in_the_shipped_packages() -> None:
    result = _run("ruff", "check", *PACKAGES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing_in_the_shipped_packages() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
