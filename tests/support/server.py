"""Running the REAL HTTP service (`ledger serve`) as a subprocess on a free loopback port.

    with running_server(database_url) as server:
        httpx.get(server.url + "/health")

The server is started exactly as an operator starts it (`python -m service.cli serve --host
127.0.0.1 --port N`, or the given `command`), with the environment given; `running_server` waits
(bounded) until `GET /health` answers 200, failing with the server's stderr if it never does, and
always stops it: SIGTERM first, SIGKILL after a bound. Only 127.0.0.1 is ever bound or contacted.

Most contract tests use the in-process client instead (tests/e2e/conftest.py): a subprocess is
for what only a process shows (start-up, its stderr, signals, binding, a browser).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from tests.support import ROOT
from tests.support.cli import stop_process
from tests.support.services import HOST, free_port

SERVE = [sys.executable, "-m", "service.cli", "serve"]
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


class ServerDidNotStart(AssertionError):
    pass


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    _stderr: IO[bytes]

    def stderr(self) -> str:
        """Everything the server wrote on stderr so far."""
        self._stderr.flush()
        return Path(self._stderr.name).read_text(errors="replace")


def server_env(
    database_url: str,
    *,
    tokens: str | None = None,
    publisher: str | None = "embedded",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The server's environment: ours, minus any LEDGER_* of the caller's, plus what is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env["LEDGER_DATABASE_URL"] = database_url
    if tokens is not None:
        env["LEDGER_API_TOKENS"] = tokens
    if publisher is not None:
        env["LEDGER_PUBLISHER"] = publisher
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@contextlib.contextmanager
def running_server(
    database_url: str,
    *,
    tokens: str | None = None,
    publisher: str | None = "embedded",
    extra_env: Mapping[str, str] | None = None,
    start_timeout: float = START_TIMEOUT_SECONDS,
    command: Sequence[str] = SERVE,
    cwd: Path = ROOT,
) -> Iterator[RunningServer]:
    """Start `ledger serve` on a free 127.0.0.1 port; yield once /health answers 200."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    with tempfile.NamedTemporaryFile(prefix="ledger-serve-", suffix=".stderr") as stderr:
        process = subprocess.Popen(
            [*command, "--host", HOST, "--port", str(port)],
            cwd=cwd,
            env=server_env(database_url, tokens=tokens, publisher=publisher, extra=extra_env),
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
        server = RunningServer(url, process, stderr)
        try:
            _wait_until_healthy(server, start_timeout)
            yield server
        finally:
            stop_process(process, signal.SIGTERM, timeout=STOP_TIMEOUT_SECONDS)


def _wait_until_healthy(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            code = server.process.poll()
            if code is not None:
                raise ServerDidNotStart(
                    f"`ledger serve` exited with {code} before answering /health; stderr:\n"
                    f"{server.stderr()}"
                )
            try:
                response = client.get("/health")
                if response.status_code == 200:
                    return
                last = f"/health answered {response.status_code}: {response.text[:500]}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
    raise ServerDidNotStart(
        f"`ledger serve` did not answer GET /health with 200 within {timeout:.0f} s "
        f"({last}); stderr:\n{server.stderr()}"
    )
