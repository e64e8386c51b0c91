"""uvicorn's HTTP protocol (httptools) with a header deadline (ADR 0029).

uvicorn closes a kept-alive connection that sends nothing for `timeout_keep_alive` seconds
after an answer, but has no deadline for a request's headers: a connection that never sends a
byte, or sends its headers a byte at a time (slowloris), stays open for ever. Here a connection
that is not being served (just opened, or answered) must complete a request's headers within
LEDGER_HEADER_TIMEOUT_SECONDS, else it is closed. A connection whose request is being served is
never closed by it (its body has a deadline of its own, in the app: api/bounds.py).
"""

from __future__ import annotations

import asyncio
import functools
from asyncio import TimerHandle

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import Settings

# uvicorn's `http` setting: this class by its import path (each worker imports it).
HTTP_PROTOCOL = "service.cli.connections:HeaderDeadlineProtocol"


@functools.cache
def header_timeout_seconds() -> float:
    return Settings.from_env().header_timeout_seconds


class HeaderDeadlineProtocol(HttpToolsProtocol):
    _header_deadline: TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
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
