"""Bounds on request bodies (ADR 0029): how many bytes of bodies a process reads and works on at
once, and how long a body may take to arrive. Pure ASGI, inside Litestar's middleware stack.

- The in-flight body budget. A request with a body is charged its Content-Length (a chunked
  body: its bytes as they arrive) from before its body is read until its answer is sent. A body
  that does not fit waits, first come first served, up to `BUSY_WAIT_SECONDS`, then answers 503
  `busy` with `Retry-After` before a byte of it is read: nothing was recorded. A body of up to
  `SMALL_BODY_BYTES` is charged but never waits (the hot path: a small admission pays a header
  scan and two additions), so small requests are never queued behind large ones.
- The body deadline. A body that has not arrived in full within `body_timeout` seconds of its
  first read (right after the headers, or after the wait for the budget) answers 408
  `body_timeout` and the connection is closed: nothing recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A body this small is charged but never made to wait (uvicorn buffers 64 KiB per connection
# before it stops reading from the socket anyway).
SMALL_BODY_BYTES = 64 * 1024
# How long a body waits for the budget before the request answers 503 `busy`.
BUSY_WAIT_SECONDS = 1.0
RETRY_AFTER_SECONDS = 1

BUSY_ANSWER = {
    "error": "busy",
    "detail": "the server is reading as many request bodies as it holds at once; nothing "
    "was recorded, retry",
}
BUSY = msgspec.json.encode(BUSY_ANSWER)
_BODY_TIMEOUT = (
    "the request body did not arrive in full within {:g} s of its headers; nothing was recorded"
)
_DISCONNECT: Message = {"type": "http.disconnect"}
BOUNDED = "ledger.bounded_request"  # the scope key of a request's `BoundedRequest`


class BodyBudget:
    """Bytes of request bodies in flight in this process, at most `limit` but for one body
    larger than the whole budget, which is let in alone. Waiters are served in arrival order."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the in-flight body budget must be at least one byte")
        self.limit = limit
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None], int]] = deque()

    def _fits(self, size: int, holding: int = 0) -> bool:
        return self.used == holding or self.used + size <= self.limit

    def charge(self, size: int) -> None:
        """Take `size` bytes without waiting (a small body)."""
        self.used += size

    async def take(self, size: int, wait: float, holding: int = 0) -> bool:
        """Take `size` bytes, waiting up to `wait` seconds behind earlier waiters; False if the
        budget had no room for it by then (nothing taken). `holding`: what the request already
        holds (a top-up): it goes first when it fits, and fits when it would be alone."""
        if (holding or not self._waiters) and self._fits(size, holding):
            self.used += size
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((size, waiter, holding))
        try:
            async with asyncio.timeout(wait):
                await waiter
        except TimeoutError:
            pass
        except BaseException:  # cancelled while waiting: nothing may stay taken
            self._withdraw(size, waiter, holding)
            raise
        if waiter.done() and not waiter.cancelled():
            return True  # granted, possibly just as the wait ran out
        self._withdraw(size, waiter, holding)
        return False

    def give(self, size: int) -> None:
        self.used -= size
        if self._waiters:
            self._grant()

    def _withdraw(self, size: int, waiter: asyncio.Future[None], holding: int) -> None:
        if waiter.done() and not waiter.cancelled():
            self.give(size)  # granted as it gave up: hand it on
            return
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove((size, waiter, holding))
        self._grant()  # a large body at the head no longer holds back those behind it

    def _grant(self) -> None:
        while self._waiters:
            size, waiter, holding = self._waiters[0]
            if waiter.done():  # given up already
                self._waiters.popleft()
                continue
            if not self._fits(size, holding):
                return
            self._waiters.popleft()
            self.used += size
            waiter.set_result(None)


def _body_size(scope: Scope) -> int | None:
    """The body's announced length; -1 for a chunked body; None when there is no body."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # Litestar answers 400 for it, reading nothing
        if name == b"transfer-encoding":
            return -1
    return None


class BodyDeadlines:
    """The requests waiting for their body, swept every `TICK_SECONDS` (not a timer per
    request: a small request pays a dictionary insert and delete). A request past its deadline
    has its wait for the body cancelled, and answers 408."""

    TICK_SECONDS = 0.25

    def __init__(self) -> None:
        self.waiting: dict[BoundedRequest, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, request: BoundedRequest, loop: asyncio.AbstractEventLoop) -> None:
        self.waiting[request] = None
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self._timer = loop.call_later(self.TICK_SECONDS, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        loop = self._loop
        if loop is None:  # pragma: no cover - armed only with a loop
            return
        now = loop.time()
        for request in [r for r in self.waiting if r.deadline <= now]:
            del self.waiting[request]
            request.expire()
        if self.waiting:
            self._timer = loop.call_later(self.TICK_SECONDS, self._sweep)


def bound_bodies(
    budget: BodyBudget, *, body_timeout: float, max_body_bytes: int
) -> Callable[[Any], Any]:
    """Litestar middleware: `budget` shared by every route, bodies over `max_body_bytes` left to
    Litestar's 413 (it refuses them by their Content-Length, reading nothing)."""
    deadlines = BodyDeadlines()

    def middleware(app: ASGIApp) -> ASGIApp:
        async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            size = _body_size(scope)
            if size is None or size == 0 or size > max_body_bytes:
                await app(scope, receive, send)
                return
            if size < 0:  # chunked: charged as it arrives
                charged = 0
            elif size <= SMALL_BODY_BYTES:
                charged = size
                budget.charge(size)
            elif await budget.take(size, min(BUSY_WAIT_SECONDS, body_timeout)):
                charged = size
            else:
                await _answer(send, 503, BUSY, retry_after=True)
                return
            request = BoundedRequest(receive, send, budget, deadlines, charged, body_timeout)
            scope[BOUNDED] = request  # for the admissions hook's top-up (`charge_decoding`)
            try:
                await app(scope, request.receive, request.send)
            finally:
                # It holds the server's `receive`, which holds the scope: left in the scope,
                # that cycle kept the request's body (and what the scope caches of it) alive
                # until a full collection, past its charge (ADR 0034).
                del scope[BOUNDED]
                budget.give(request.charged)

        return bounded

    return middleware


class BoundedRequest:
    """One request's receive and send, bounded: its body within the deadline (else 408), a
    chunked body's bytes charged as they arrive (else 503 `busy`); once this answered, what the
    app sends after it is dropped."""

    __slots__ = (
        "_answered",
        "_body_done",
        "_budget",
        "_chunked",
        "_deadlines",
        "_expired",
        "_receive",
        "_send",
        "_started",
        "_task",
        "_timeout",
        "charged",
        "deadline",
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        budget: BodyBudget,
        deadlines: BodyDeadlines,
        charged: int,
        timeout: float,
    ) -> None:
        self._receive, self._send = receive, send
        self._budget, self._deadlines = budget, deadlines
        self._chunked = charged == 0
        self.charged = charged
        self._timeout = timeout
        self.deadline = -1.0  # set when it first waits for its body
        self._task: asyncio.Task[Any] | None = None
        self._started = self._answered = self._body_done = self._expired = False

    async def send(self, message: Message) -> None:
        if self._answered:
            return  # answered here already: what the app says after the disconnect is dropped
        if message["type"] == "http.response.start":
            self._started = True
        await self._send(message)

    async def top_up(self, size: int) -> bool:
        """Charge `size` more (what decoding the body will cost beyond its bytes), waiting as a
        body waits; False when it does not fit by then (nothing more taken)."""
        if size <= 0:
            return True
        if not await self._budget.take(size, BUSY_WAIT_SECONDS, holding=self.charged):
            return False
        self.charged += size
        return True

    def expire(self) -> None:
        """The deadline passed while the body was awaited: stop waiting (see `receive`)."""
        if self._task is not None and not self._task.done():
            self._expired = True
            self._task.cancel()

    async def receive(self) -> Message:
        if self._body_done:
            return await self._receive()
        loop = asyncio.get_running_loop()
        if self.deadline < 0:
            self.deadline = loop.time() + self._timeout
            self._task = asyncio.current_task()
        self._deadlines.add(self, loop)
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if not self._expired or self._task is None:
                raise
            self._expired = False
            self._task.uncancel()
            detail = _BODY_TIMEOUT.format(self._timeout)
            body = msgspec.json.encode({"error": "body_timeout", "detail": detail})
            return await self._give_up(408, body)
        finally:
            self._deadlines.waiting.pop(self, None)
        if message["type"] == "http.request":
            if not message.get("more_body", False):
                self._body_done = True
            if self._chunked and (chunk := len(message.get("body", b""))):
                left = self.deadline - loop.time()
                if not await self._budget.take(chunk, max(0.0, min(BUSY_WAIT_SECONDS, left))):
                    return await self._give_up(503, BUSY, retry_after=True)
                self.charged += chunk
        return message

    async def _give_up(self, status: int, body: bytes, *, retry_after: bool = False) -> Message:
        """Answer here (unless the app has begun its answer) and tell the app the client left."""
        if not self._started:
            self._answered = True
            await _answer(self._send, status, body, retry_after=retry_after, close=True)
        return _DISCONNECT


async def _answer(
    send: Send, status: int, body: bytes, *, retry_after: bool = False, close: bool = False
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after:
        headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
    if close:  # the rest of the body is not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
