"""The projection follower in a child process of its own (ADR 0020).

In `ledger serve` the leader's follower shared one interpreter lock with the HTTP event loop
and the group-commit writer: every page it applied held up admissions. Here the leader starts
the follower as a child process instead (`LEDGER_FOLLOWER=process`, the default of
`ledger serve`); it runs the same `ProjectionRunner`, on its own connections and its own core.

The parent keeps one end of a pipe: each byte it sends wakes the follower (b"w": new events; b"!":
someone waits for the read side, apply at once); closing it stops the follower, and so does the
parent's death (the child reads end-of-file). A child that died on its own is found by the next
wake (the pipe is broken) and started again. Waiting for the read side stays what it is in
every process that does not run the follower itself: polling the tracking positions
(`ProjectionRunner.wait_for`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from service.settings import Settings

log = logging.getLogger("ledger.following")

STOP_SECONDS = 10.0
FOLLOWER_GC_YOUNG = 100_000
WAKE, HURRY = b"w", b"!"


def follow_until_told(settings: Settings, wakes: Connection) -> None:
    """The child: follow the log into the read models until the pipe closes."""
    from ledger.infrastructure.embedded import EmbeddedPublisher
    from projections.follower import ProjectionRunner
    from service.composition import build_ledger, build_read_store

    # The parent stops it (closing the pipe); a terminal's Ctrl-C goes to the parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = build_read_store(settings)
    ledger = build_ledger(settings, EmbeddedPublisher())
    runner = ProjectionRunner(ledger.recorder, ledger.mapper.transcoder, store)
    runner.start()
    # This process does nothing else: what start-up made is out of the cycle collector's
    # reach, as in the server's own process (ADR 0031). A page makes some ten tracked objects
    # an event, nearly all freed by reference counting once it is applied: young collections
    # every FOLLOWER_GC_YOUNG allocations, not Python's 700, as `ledger admit` (ADR 0052).
    gc.freeze()
    gc.set_threshold(FOLLOWER_GC_YOUNG, *gc.get_threshold()[1:])
    try:
        while True:
            try:
                message = wakes.recv_bytes()
            except (EOFError, OSError):
                return
            runner.wake(urgent=HURRY in message)
    finally:
        runner.stop()
        ledger.close()
        store.dispose()


class FollowerProcess:
    """Starts, wakes and stops the follower's child process (from the leader)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._process: Any = None  # multiprocessing.context.SpawnProcess
        self._wakes: Connection | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else int(self._process.pid)

    def start(self) -> None:
        with self._lock:
            if self._process is None:
                self._start()

    def _start(self) -> None:
        # spawn, not fork: the parent runs threads (the event loop's, the writer's).
        context = multiprocessing.get_context("spawn")
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(
            target=follow_until_told,
            args=(self.settings, reader),
            name="ledger-projections",
            daemon=True,
        )
        process.start()
        reader.close()
        # Never wait on the child: a full pipe already holds wakes it has not read (ADR 0035).
        os.set_blocking(writer.fileno(), False)
        self._process, self._wakes = process, writer

    def wake(self, urgent: bool = False) -> None:
        with self._lock:
            if self._wakes is None:
                return
            try:
                self._wakes.send_bytes(HURRY if urgent else WAKE)
            except BlockingIOError:
                # The child has 13,000 wakes unread (stopped, or slower than the admissions
                # for a while): it will wake anyway. Waiting here once blocked the event loop
                # of the leader until the child read again, /health included (ADR 0035).
                return
            except OSError:
                # The child is gone (killed, out of memory): its end of the pipe closed. A new
                # one starts from the tracking positions; nothing is applied twice (ADR 0006).
                log.warning("the projection follower process died; starting another")
                self._wakes.close()
                if self._process is not None:
                    self._process.join(STOP_SECONDS)
                self._start()
                self._wakes.send_bytes(HURRY if urgent else WAKE)

    def stop(self) -> None:
        with self._lock:
            process, wakes = self._process, self._wakes
            self._process = self._wakes = None
        if wakes is not None:
            with contextlib.suppress(OSError):
                wakes.close()
        if process is None:
            return
        process.join(STOP_SECONDS)
        if process.is_alive():
            log.warning("the projection follower did not stop in %.0f s: killed", STOP_SECONDS)
            process.kill()
            process.join(STOP_SECONDS)
