"""`ledger serve` as the real process an operator starts: what it says at start-up (and never
says: a token), how it stops on a signal, where it refuses to listen. Everything else of the
HTTP contract runs in process (tests/e2e/test_api.py)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.settings import Settings
from tests.support import ROOT
from tests.support.builders import event
from tests.support.cli import stop_process
from tests.support.http import TOKENS, UNKNOWN_TOKEN, admit, as_token, token_calls
from tests.support.server import (
    SERVE,
    STOP_TIMEOUT_SECONDS,
    RunningServer,
    running_server,
    server_env,
)
from tests.support.services import free_port, wait_until


@pytest.fixture
def server(migrated: Settings) -> Iterator[RunningServer]:
    """`ledger serve` on this test's own database (schema applied, as `ledger db upgrade` does)."""
    with running_server(migrated.database_url) as running:
        yield running


@pytest.fixture
def secured(migrated: Settings) -> Iterator[RunningServer]:
    """`ledger serve` with LEDGER_API_TOKENS set."""
    with running_server(migrated.database_url, tokens=TOKENS) as running:
        yield running


def test_no_token_ever_appears_in_the_servers_stderr(secured):
    with httpx.Client(base_url=secured.url, timeout=60.0) as http:
        for token in ("admin-token", "reader-token", "admitter", UNKNOWN_TOKEN):
            with as_token(http, token) as client:
                for _, method, path, body in token_calls("w"):
                    client.request(method, path, json=body)
                client.post("/v1/windows/w/admissions", content=b"{bad json")
                client.post("/v1/windows/w/admissions", json={"events": [event("z", [1])]})
    output = secured.stderr()
    assert "auth on (3 tokens)" in output
    for secret in ("admin-token", "reader-token", "admitter", UNKNOWN_TOKEN):
        assert secret not in output


def test_serve_says_where_the_data_is_which_publisher_and_that_auth_is_off(server, migrated):
    output = server.stderr()
    assert migrated.describe_database() in output
    assert "publisher embedded" in output
    assert "auth OFF" in output
    assert f"listening on {server.url}" in output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_shuts_down_on_sigterm_and_on_sigint_without_being_killed(sig, tmp_path):
    with running_server(f"sqlite:///{tmp_path / 'ledger.db'}") as server:
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            admit(client, "w", event("a"))
        code = stop_process(server.process, sig, timeout=STOP_TIMEOUT_SECONDS)
        output = server.stderr()
    # Exited by itself within the bound (0, or the signal re-raised after a graceful shutdown),
    # not by the SIGKILL that follows the bound.
    assert code in (0, -sig), f"exit {code}; stderr:\n{output}"
    assert "Traceback" not in output, output


def test_serve_refuses_a_non_loopback_host_without_tokens(database_url):
    for tokens in (None, ""):
        env = server_env(database_url, tokens=tokens)
        result = subprocess.run(
            [*SERVE, "--host", "0.0.0.0", "--port", str(free_port())],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode != 0
        assert "refusing to bind 0.0.0.0" in result.stderr
        assert "LEDGER_API_TOKENS" in result.stderr
        assert "listening" not in result.stderr


def follower_children(server: RunningServer) -> list[int]:
    """The server's child processes started by multiprocessing's spawn (the follower, ADR 0020;
    not its resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == server.process.pid and fields[0] != "Z" and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def is_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_serve_applies_the_read_side_in_a_child_process_that_stops_with_it(server):
    wait_until(lambda: len(follower_children(server)) == 1, 30, "the follower process to start")
    (follower,) = follower_children(server)
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        admit(client, "w", event("a"), event("b"))
        closed = client.post("/v1/windows/w/close").json()
        assert closed["gate"] == "PASS", closed
        assert closed["counts"]["admitted"] == 2
        admitted = client.get("/v1/windows/w/admitted").json()
        assert [item["event_id"] for item in admitted["items"]] == ["a", "b"]
    code = stop_process(server.process, signal.SIGTERM, timeout=STOP_TIMEOUT_SECONDS)
    assert code in (0, -signal.SIGTERM), server.stderr()
    wait_until(lambda: is_gone(follower), STOP_TIMEOUT_SECONDS, "the follower to stop")


def test_a_killed_server_leaves_no_follower_process_behind(server):
    wait_until(lambda: len(follower_children(server)) == 1, 30, "the follower process to start")
    (follower,) = follower_children(server)
    server.process.kill()
    server.process.wait(timeout=STOP_TIMEOUT_SECONDS)
    # Its end of the pipe closed with the server: the follower reads end-of-file and exits.
    wait_until(lambda: is_gone(follower), 30, "the orphaned follower to exit")


def test_a_follower_process_that_dies_is_started_again_by_the_next_admission(server):
    wait_until(lambda: len(follower_children(server)) == 1, 30, "the follower process to start")
    (follower,) = follower_children(server)
    os.kill(follower, signal.SIGKILL)
    wait_until(lambda: is_gone(follower), 30, "the killed follower to be reaped")
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        admit(client, "w", event("a"))
        closed = client.post("/v1/windows/w/close").json()
    assert closed["gate"] == "PASS", closed
    assert [pid for pid in follower_children(server) if pid != follower] != []
    assert "the projection follower process died; starting another" in server.stderr()
