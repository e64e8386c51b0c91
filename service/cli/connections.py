"""uvicorn's HTTP protocol (httptools) with a header deadline (ADR 0029).

uvicorn closes a kept-alive connection that sends nothing for `timeout_keep_alive` seconds
after an answer, but has no deadline for a request's headers: a connection that never sends a
byte, or sends its headers a byte at a time (slowloris), stays open for ever. Here a connection
that is not being served (just opened, or answered) must complete a request's headers within
LEDGER_HEADER_TIMEOUT_SECONDS, else it is closed. A connection whose request is being served is
never closed by it (its body has a deadline of its own, in the app: api/bounds.py).

uvicorn writes a response's head and its body in two `write` calls: two system calls and two
TCP segments an answer, with the interpreter lock held (ADR 0048). The connection's transport
here sends every write of one event-loop iteration in one call.
"""

from __future__ import annotations

import asyncio
import functools
from asyncio import TimerHandle
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import Settings

# Once this much is held it is sent at once: joining large writes saves nothing, and the
# socket's flow control (which pauses a streaming response) must see them.
HOLD_BELOW_BYTES = 64 * 1024

# uvicorn's `http` setting: this class by its import path (each worker imports it).
HTTP_PROTOCOL = "service.cli.connections:HeaderDeadlineProtocol"


@functools.cache
def header_timeout_seconds() -> float:
    return Settings.from_env().header_timeout_seconds


class HeaderDeadlineProtocol(HttpToolsProtocol):
    _header_deadline: TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Flow control keeps the socket's own transport (pausing reads); writes coalesce.
        self.transport = cast(asyncio.Transport, CoalescedTransport(transport, self.loop))
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._idle():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _idle(self) -> bool:
        """No request of this connection is being served (none yet, or the last answered)."""
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(
            header_timeout_seconds(), self._header_deadline_passed
        )

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self._idle() and not self.transport.is_closing():
            self.transport.close()


class CoalescedTransport:
    """A connection's transport whose writes of one event-loop iteration go out in one
    `write`: a response's head and body in one system call and one TCP segment. What is held
    is sent before the loop next waits for events (`call_soon`), so no answer is delayed; a
    close sends it first, an abort drops it."""

    __slots__ = ("_held", "_held_bytes", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= HOLD_BELOW_BYTES:  # after what is held; not copied to be joined
            self.flush()
            self._transport.write(data)
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))
        self._held_bytes += len(data)
        if self._held_bytes >= HOLD_BELOW_BYTES:
            # Many small writes (a streamed answer) go now, so the socket's flow control sees
            # them and pauses the stream as before.
            self.flush()

    def flush(self) -> None:
        if self._held:
            held, self._held, self._held_bytes = self._held, [], 0
            if not self._transport.is_closing():
                self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held, self._held_bytes = [], 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held_bytes

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, get_extra_info, pause_reading, ...) is the socket's.
        return getattr(self._transport, name)
