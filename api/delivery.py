"""The group commit's answers handed to the event loop, and a request's wait for its own
within its deadline (ADRs 0027, 0046).

The writer thread answers a whole group of requests at once. `asyncio.wrap_future` would hand
each answer over with a `call_soon_threadsafe` of its own (a callback scheduled, the loop woken,
the answer copied, one request at a time); here the answers that arrive together are queued
and the loop is woken once to hand them all over.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar, cast

from litestar.types import Receive

from ledger.application.group_commit import withdrawn

T = TypeVar("T")


class Deliveries:
    """Answers of concurrent futures, set on one event loop's own futures in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ready: deque[tuple[Future[Any], asyncio.Future[Any]]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def watch(self, pending: Future[T]) -> asyncio.Future[T]:
        """A future of the loop's that gets `pending`'s outcome. Settling it first (a result,
        a cancellation) leaves `pending` alone, unlike `asyncio.wrap_future`'s."""
        answer: asyncio.Future[T] = self.loop.create_future()
        pending.add_done_callback(partial(self._done, answer))
        return answer

    def _done(self, answer: asyncio.Future[Any], pending: Future[Any]) -> None:
        # Any thread: the writer's, or the loop's own when `pending` was done already.
        self._ready.append((pending, answer))
        with self._lock:
            if self._scheduled:
                return  # the drain to come takes this one too: it has not started popping
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False  # before popping: what arrives from now on wakes anew
        ready = self._ready
        while ready:
            pending, answer = ready.popleft()
            if answer.done():
                continue
            if pending.cancelled():
                answer.cancel()
            elif (exc := pending.exception()) is not None:
                answer.set_exception(exc)
            else:
                answer.set_result(pending.result())


# After this long waiting for its write, a request also listens for its client leaving.
CLIENT_CHECK_AFTER = 0.1


async def within_deadline(
    pending: Future[T],
    timeout: float,
    receive: Receive,
    deliveries: Deliveries,
) -> T:
    """The request's results. A request the writer has not taken yet is withdrawn (nothing
    recorded) at its deadline, answering 503, or as soon as its client goes away; one being
    written is its outcome (ADR 0027). The client is listened to only once the request has
    waited CLIENT_CHECK_AFTER: nearly all are answered sooner, at the cost of one timer (not
    `asyncio.wait`'s futures and callbacks)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Any] = deliveries.watch(pending)
    check = loop.call_later(min(CLIENT_CHECK_AFTER, timeout), _stop_waiting, answer)
    try:
        results = await answer
    finally:
        check.cancel()
    if results is not _STILL_WAITING:
        return cast("T", results)
    waiting = deliveries.watch(pending)
    gone: asyncio.Future[Any] = asyncio.ensure_future(_client_gone(receive))
    either: set[asyncio.Future[Any]] = {waiting, gone}
    try:
        await asyncio.wait(
            either,
            timeout=max(0.0, timeout - CLIENT_CHECK_AFTER),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        gone.cancel()
    if not waiting.done() and pending.cancel():
        raise withdrawn(timeout) from None
    return await waiting


_STILL_WAITING = object()


def _stop_waiting(answer: asyncio.Future[Any]) -> None:
    if not answer.done():
        answer.set_result(_STILL_WAITING)


async def _client_gone(receive: Receive) -> None:
    """Returns when the client has disconnected (the body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass
