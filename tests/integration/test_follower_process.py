"""The follower's child process (ADR 0020) as the leader wakes it after every admission: a child
that stops reading its wakes never holds up the leader (ADR 0035)."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from collections.abc import Iterator

import pytest

from service.composition import Services, build_services
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.services import wait_until

# Several times what a pipe holds (64 KiB by default: 13,107 wakes of 5 bytes).
WAKES = 100_000


@pytest.fixture
def leading(migrated: Settings) -> Iterator[Services]:
    """Services that lead with the follower in a child process, as `ledger serve` runs."""
    services = build_services(dataclasses.replace(migrated, follower="process"))
    try:
        services.start_following()
        process = services.follower_process
        assert process is not None
        wait_until(lambda: process.pid is not None, 30, "the follower process to start")
        yield services
    finally:
        services.close()


def test_a_stopped_follower_process_never_blocks_a_wake_and_follows_again_once_resumed(
    leading: Services,
) -> None:
    process = leading.follower_process
    assert process is not None and process.pid is not None
    child = process.pid
    os.kill(child, signal.SIGSTOP)
    try:
        leading.admit("w", batch("w", event("a")))  # the write side does not wait for it
        woken = threading.Event()

        def wake_many() -> None:
            for _ in range(WAKES):
                leading.wake_follower()
            woken.set()

        threading.Thread(target=wake_many, daemon=True).start()
        # Blocking, the 13,108th wake waited for the child: on the event loop of the leader.
        assert woken.wait(60), "a wake waited for the stopped follower to read its pipe"
    finally:
        os.kill(child, signal.SIGCONT)
    leading.admit("w", batch("w", event("b")))
    closed = leading.close_window("w")  # waits for the read side: the child follows again
    assert (closed["gate"], closed["counts"]["admitted"]) == ("PASS", 2), closed
    items, _ = leading.admitted("w", None, None)
    assert [item["event_id"] for item in items] == ["a", "b"]
    assert process.pid == child  # the same child: a full pipe is not a dead one
