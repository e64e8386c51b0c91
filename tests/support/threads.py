"""Running calls at the same moment, one thread each."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at once (one thread each); what each returned or raised."""
    outcomes: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = calls[i]()
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcomes
