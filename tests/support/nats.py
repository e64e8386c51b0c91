"""A real nats-server of the test's own, and raw JetStream access to check what the bus holds.

`NatsServer` runs /usr/sbin/nats-server (or `nats-server` on PATH) with JetStream on a free
loopback port and a temporary store directory, so a test can stop it (SIGSTOP: publishes time
out, the publish ambiguity), continue it (SIGCONT), kill it (SIGKILL: connection refused) and
restart it on the same port and store. Only when the binary is missing does the `nats_server`
fixture fall back to the NATS already running on 127.0.0.1:4222, which a test can use but not
stop; under CI=true a missing NATS fails the test (tests.support.services.missing_service).

The raw helpers open a short-lived connection of their own on a fresh event loop, so they see
the bus the way another process would. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck

from tests.support.services import HOST, free_port, missing_service

T = TypeVar("T")

SYSTEM_NATS_PORT = 4222
START_TIMEOUT_SECONDS = 10.0


def nats_server_binary() -> str | None:
    for candidate in (os.environ.get("LEDGER_TEST_NATS_SERVER"), "/usr/sbin/nats-server"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("nats-server")


def port_accepts(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


class NatsServer:
    """One nats-server process with JetStream; restartable on the same port and store dir."""

    external = False

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        found = binary or nats_server_binary()
        if found is None:
            raise FileNotFoundError("nats-server binary not found")
        self.binary = found
        self.workdir = workdir
        self.store_dir = workdir / "nats-store"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "nats-server.log"
        self.port = free_port()
        self.monitor_port = free_port()  # HTTP monitoring (/connz), loopback only
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped = False
        self.starts = 0

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> NatsServer:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("nats-server is already running")
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts} on port {self.port}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "-js",
                    "-sd",
                    str(self.store_dir),
                    "-a",
                    HOST,
                    "-p",
                    str(self.port),
                    "-m",
                    str(self.monitor_port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.stopped = False
        self._wait_until_accepting()
        return self

    def _wait_until_accepting(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self.process.returncode} at start:\n{self.log()}"
                )
            if port_accepts(self.port):
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"nats-server did not accept connections in time:\n{self.log()}")

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("nats-server is not running")
        self.process.send_signal(sig)

    def stop(self) -> None:
        """SIGSTOP: the server holds its sockets but answers nothing (publishes time out).

        Returns once every thread of the server is stopped: kill() only queues the signal, and
        a thread still running for a moment has been seen to answer one more request.
        """
        self._signal(signal.SIGSTOP)
        self.stopped = True
        deadline = time.monotonic() + 5
        while not self._all_threads_stopped():
            if time.monotonic() > deadline:
                raise RuntimeError("nats-server did not stop within 5 s of SIGSTOP")
            time.sleep(0.005)

    def _all_threads_stopped(self) -> bool:
        assert self.process is not None
        tasks = Path(f"/proc/{self.process.pid}/task")
        if not tasks.is_dir():  # not Linux: nothing to look at, trust the signal
            time.sleep(0.1)
            return True
        states = []
        for stat in tasks.glob("*/stat"):
            with contextlib.suppress(OSError):
                # "pid (comm) S ...": the state follows the last ')'
                states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        return bool(states) and all(state in ("T", "t") for state in states)

    def cont(self) -> None:
        """SIGCONT; a no-op unless stopped."""
        if self.stopped and self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        self.stopped = False

    def kill(self) -> None:
        """SIGKILL and reap: the port refuses connections until restart()."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL works on a stopped process too
            self.process.wait(timeout=10)
        self.stopped = False

    def restart(self) -> NatsServer:
        """Start again on the same port with the same store dir (the stream survives)."""
        self.kill()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while port_accepts(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.start()

    def close(self) -> None:
        self.kill()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def require_control(self) -> None:
        """This server can be stopped and killed (always true for our own process)."""

    def connections(self) -> list[dict[str, Any]]:
        """The client connections the server holds now (its /connz monitoring endpoint)."""
        url = f"http://{HOST}:{self.monitor_port}/connz?limit=1024"
        with urllib.request.urlopen(url, timeout=5) as response:
            return list(json.load(response).get("connections") or [])


class SystemNats:
    """The NATS already on 127.0.0.1:4222: usable, but not ours to stop or kill."""

    external = True
    port = SYSTEM_NATS_PORT
    stopped = False

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def require_control(self) -> None:
        missing_service(
            "the nats-server binary is missing, and the system NATS on 127.0.0.1:4222 "
            "must not be stopped or killed by a test"
        )

    def stop(self) -> None:
        self.require_control()

    def kill(self) -> None:
        self.require_control()

    def restart(self) -> SystemNats:
        self.require_control()
        return self

    def cont(self) -> None:
        """Nothing to continue: this server is never stopped by a test."""

    def connections(self) -> list[dict[str, Any]]:
        self.require_control()
        return []

    def close(self) -> None:
        pass


AnyNats = NatsServer | SystemNats


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[AnyNats]:
    """A nats-server of this test's own; killed and reaped at teardown whatever happened."""
    if nats_server_binary() is None:
        if not port_accepts(SYSTEM_NATS_PORT, timeout=1.0):
            missing_service(
                "no nats-server binary and nothing listens on 127.0.0.1:4222: NATS is missing"
            )
        yield SystemNats()
        return
    server = NatsServer(tmp_path / "nats")
    try:
        server.start()
        yield server
    finally:
        server.close()


def unique_stream() -> tuple[str, str]:
    """A stream name and subject prefix of the test's own (never overlapping another's)."""
    tag = uuid.uuid4().hex[:12]
    return f"LEDGER_T_{tag.upper()}", f"ledger_t_{tag}.windows"


# --- raw JetStream access (another client's view of the bus) -----------------------------


def with_jetstream(url: str, work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Run `work` on a connection of its own (no reconnects), closed afterwards."""
    assert url.startswith(f"nats://{HOST}:"), f"tests talk to loopback only, not {url}"

    async def main() -> T:
        nc = await nats.connect(
            url, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0
        )
        try:
            return await asyncio.wait_for(work(nc.jetstream()), 15)
        finally:
            await nc.close()

    return asyncio.run(main())


@dataclass(frozen=True)
class StoredMessage:
    seq: int
    subject: str
    msg_id: str | None
    data: bytes


def _stored(raw: Any) -> StoredMessage:
    headers = raw.headers or {}
    assert raw.seq is not None
    return StoredMessage(
        int(raw.seq), str(raw.subject), headers.get("Nats-Msg-Id"), raw.data or b""
    )


def get_message(url: str, stream: str, seq: int) -> StoredMessage:
    async def work(js: JetStreamContext) -> StoredMessage:
        return _stored(await js.get_msg(stream, seq=seq))

    return with_jetstream(url, work)


def subject_messages(url: str, stream: str, subject: str) -> list[StoredMessage]:
    """Every message the stream holds on the subject, in stream order."""

    async def work(js: JetStreamContext) -> list[StoredMessage]:
        found: list[StoredMessage] = []
        seq = 1
        while True:
            try:
                raw = await js.get_msg(stream, seq=seq, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                return found
            stored = _stored(raw)
            found.append(stored)
            seq = stored.seq + 1

    return with_jetstream(url, work)


def subject_count(url: str, stream: str, subject: str) -> int:
    async def work(js: JetStreamContext) -> int:
        info = await js.stream_info(stream, subjects_filter=subject)
        return int((info.state.subjects or {}).get(subject, 0))

    return with_jetstream(url, work)


def publish_raw(url: str, stream: str, subject: str, data: bytes, msg_id: str | None) -> PubAck:
    async def work(js: JetStreamContext) -> PubAck:
        headers = {"Nats-Msg-Id": msg_id} if msg_id is not None else None
        return await js.publish(subject, data, timeout=5, stream=stream, headers=headers)

    return with_jetstream(url, work)


def delete_stream(url: str, stream: str) -> None:
    async def work(js: JetStreamContext) -> None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)

    with contextlib.suppress(Exception):
        with_jetstream(url, work)


# --- after a publisher's close ---------------------------------------------------------


def release_event_loop(services: Any) -> None:
    """Release whatever the publisher's close() left behind, so that no later test's garbage
    collection reports this test's leftovers (the project runs with filterwarnings=error).

    A safety net only: an open loop after close() is pinned as a failure by
    test_closing_the_services_closes_the_publishers_event_loop, and a client left by an
    abandoned connect by test_a_server_unreachable_at_first_use_..._one_connection. Closes
    every NATS client still on the loop, cancels what remains, then closes the loop.
    """
    publisher = services.ledger.publisher
    loop: asyncio.AbstractEventLoop = publisher._loop  # type: ignore[attr-defined]
    if loop.is_closed() or loop.is_running():
        return
    clients = set()
    for task in asyncio.all_tasks(loop):
        frame = getattr(task.get_coro(), "cr_frame", None)
        owner = frame.f_locals.get("self") if frame is not None else None
        if isinstance(owner, NatsClient):
            clients.add(owner)
    for client in clients:
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait_for(client.close(), 5))
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def publish_many(url: str, stream: str, subject: str, messages: list[tuple[bytes, str]]) -> int:
    """Publish (data, msg_id) pairs over one connection, each waiting for its ack; how many
    the stream stored as new."""

    async def work(js: JetStreamContext) -> int:
        stored = 0
        for data, msg_id in messages:
            ack = await js.publish(
                subject, data, timeout=5, stream=stream, headers={"Nats-Msg-Id": msg_id}
            )
            stored += not ack.duplicate
        return stored

    return with_jetstream(url, work)
