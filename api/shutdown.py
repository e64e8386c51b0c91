"""The shutdown deadline of a process served by uvicorn (ADR 0029).

uvicorn stops on SIGTERM or SIGINT: it stops accepting, lets in-flight requests finish (for at
most `timeout_graceful_shutdown` seconds, then cancels them), runs the app's shutdown and exits.
Two things it does not do, added here from the app's start-up, when uvicorn's own signal handler
is installed (in each worker process; never in process under tests):

- a second SIGTERM (uvicorn forces its exit on a second SIGINT only) exits at once: uvicorn is
  told to force its exit, and the process ends `FORCED_EXIT_GRACE_SECONDS` later if it has not;
- a shutdown that overruns its deadline (an app shutdown stuck on a thread, a lock) still ends:
  the process ends `SHUTDOWN_GRACE_SECONDS` after the deadline.

A process ended by the timer exits with `FORCED_EXIT_CODE`, not 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

log = logging.getLogger("ledger.api")

EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)
FORCED_EXIT_CODE = 1
FORCED_EXIT_GRACE_SECONDS = 1.0
# Beyond the graceful deadline: the app's own shutdown (the group-commit writer, the follower).
SHUTDOWN_GRACE_SECONDS = 10.0


def _uvicorn_server(handler: Any) -> Any:
    """The uvicorn Server whose `handle_exit` is `handler`, else None."""
    server = getattr(handler, "__self__", None)
    if server is not None and hasattr(server, "force_exit") and hasattr(server, "should_exit"):
        return server
    return None


def _end_process_after(seconds: float, why: str) -> None:
    def end() -> None:
        print(f"ledger: {why}: exiting now (code {FORCED_EXIT_CODE})", file=sys.stderr, flush=True)
        os._exit(FORCED_EXIT_CODE)

    timer = threading.Timer(seconds, end)
    timer.daemon = True  # a process that exits by itself first is not held up by it
    timer.start()


def bound_shutdown(deadline_seconds: float) -> bool:
    """Chain the exit signals to uvicorn's handler as described above (uvicorn puts back its
    predecessors when it stops); False, doing nothing, when uvicorn's handler is not installed
    (in process, under tests) or off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    server = _uvicorn_server(signal.getsignal(signal.SIGTERM))
    if server is None:
        return False
    received: list[int] = []

    def on_exit_signal(sig: int, frame: FrameType | None) -> None:
        received.append(sig)
        server.handle_exit(sig, frame)
        if len(received) == 1:
            _end_process_after(
                deadline_seconds + SHUTDOWN_GRACE_SECONDS,
                f"shutdown overran its {deadline_seconds:g} s deadline",
            )
        else:
            server.force_exit = True
            _end_process_after(FORCED_EXIT_GRACE_SECONDS, "second stop signal")

    for sig in EXIT_SIGNALS:
        signal.signal(sig, on_exit_signal)
    return True
