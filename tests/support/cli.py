"""The real `ledger` command (`python -m service.cli`), run as a subprocess on a given database
with the embedded publisher, from the project root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

LEDGER = [sys.executable, "-m", "service.cli"]


def cli_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "LEDGER_DATABASE_URL": database_url, "LEDGER_PUBLISHER": "embedded"}


def run_cli(
    database_url: str, *args: str, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`ledger ARGS...` as a subprocess on the given database; returns when it exits."""
    return subprocess.run(
        [*LEDGER, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(database_url),
        cwd=ROOT,
        timeout=timeout,
    )


def start_cli(database_url: str, *args: str, stderr_path: Path) -> subprocess.Popen[bytes]:
    """`ledger ARGS...` started in the background; its stderr goes to a file (never a pipe that
    could fill up). Always pair with `stop_process` in a finally."""
    with open(stderr_path, "ab") as err:
        return subprocess.Popen(
            [*LEDGER, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=cli_env(database_url),
            cwd=ROOT,
        )


def stop_process(
    process: subprocess.Popen[bytes], sig: int = signal.SIGKILL, timeout: float = 60
) -> int:
    """Send `sig` if it still runs, then reap it (SIGKILL if it does not exit within `timeout`
    seconds); returns its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=timeout)
