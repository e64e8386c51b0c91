"""The admissions route's lean path (ADR 0047): a plain admission answered without Litestar's
request machinery, every other request left to the route as it stands.

Litestar spends about 85 µs of the event loop on each single-event admission beyond the work
itself (a `Request`, the hook's body read through it, the handler's signature and kwargs, a
`Response` and its headers), two thirds of the loop's cost a request. The lean path is a
middleware of the admissions route only, inside the app's middleware (metrics, the body
bounds), so those apply as before. It serves a request only when it is plainly admissible:

- the token grants `admit` (or auth is off), the path holds no control character;
- the body has a Content-Length of at most `SMALL_BODY_BYTES` (larger ones are charged for
  their values by the route's hook, ADR 0029) and arrives whole;
- the body nests no deeper than a payload may, decodes strictly and prepares (validation,
  identities, hashes) without an error;
- the window is not sealed.

Anything else goes to the route with the body replayed, as if the lean path were not there:
every refusal is made, worded and counted by the route, and no error is mapped twice. Once a
request has been handed to the writer, a failure (a closed window, a storage failure, the
deadline) cannot be re-run; it is handed to the route to raise from its hook, so it meets the
same exception handlers (`LEAN_FAILURE`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

import anyio.to_thread
import msgspec
from litestar.types import (
    ASGIApp,
    HTTPResponseStartEvent,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from api.bounds import SMALL_BODY_BYTES
from api.delivery import within_deadline
from api.metrics import LedgerMetrics
from api.refusals import CONTROL, LEAN_FAILURE, strict_admissions
from api.schemas import AdmissionResponse, AdmissionResultOut
from ledger.admissions import BODY_LEVELS, Admission, AdmissionIn, check_nesting, prepare
from ledger.application.results import AdmissionResult

# Requests of up to this many events are prepared on the event loop (ADR 0020).
INLINE_PREPARE_EVENTS = 16

_encode = msgspec.json.Encoder().encode


async def prepared(window_id: str, events: Sequence[AdmissionIn]) -> list[Admission]:
    """Validated and hashed: a few events on the loop (tens of µs each), more in a thread."""
    if len(events) <= INLINE_PREPARE_EVENTS:
        return prepare(window_id, events)
    return await anyio.to_thread.run_sync(lambda: prepare(window_id, events))


def answer(
    window_id: str, results: Sequence[AdmissionResult], metrics: LedgerMetrics
) -> AdmissionResponse:
    """The response to an admission, its verdicts counted in the metrics."""
    # Built as structs directly, not converted from dictionaries: a third of the cost for a
    # batch's 500 results.
    out = [
        AdmissionResultOut(event_type, event_id, identity, payload_hash, verdict.value, offset)
        for event_type, event_id, identity, payload_hash, verdict, offset in results
    ]
    counts: Counter[str] = Counter(r.verdict for r in out)
    for verdict_name, n in counts.items():
        metrics.count_admissions(verdict_name, n)
    return AdmissionResponse(window_id, out, dict(counts))


def lean_admissions(app: ASGIApp) -> ASGIApp:
    """The admissions route's middleware: the lean path, else the route itself (`app`)."""
    route = app

    async def admissions(scope: Scope, receive: Receive, send: Send) -> None:
        window_id = _plain(scope)
        if window_id is None:
            await route(scope, receive, send)
            return
        body, messages = await _read_body(receive)
        replay = _replay(messages, receive)
        state = scope["litestar_app"].state
        services = state.services
        try:
            check_nesting(body, BODY_LEVELS)
            admissions = await prepared(window_id, strict_admissions(body).events)
            pending = services.submit_admission(window_id, admissions)
        except Exception:  # bad input: the route refuses it in its own words
            pending = None
        if pending is None:  # ... or a sealed window, whose guard may read in a thread
            await route(scope, replay, send)
            return
        try:
            results = await within_deadline(
                pending, services.settings.request_timeout_seconds, receive, state.deliveries
            )
        except Exception as exc:
            # Raised by the route's hook before anything else: one mapping, no second write.
            cast("dict[str, Any]", scope)[LEAN_FAILURE] = exc
            await route(scope, replay, send)
            return
        content = _encode(answer(window_id, results, state.metrics))
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
            ],
        }
        await send(start)
        await send({"type": "http.response.body", "body": content, "more_body": False})

    return admissions


def _plain(scope: Scope) -> str | None:
    """The window id of a request the lean path may try: a small body of known length, the
    `admit` scope granted, a path without control characters."""
    length = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            if length is not None:
                return None
            length = value
        elif name == b"transfer-encoding":
            return None
    # At most six digits: `int` of thousands of them is slow, and refused beyond 4,300.
    if length is None or not (0 < len(length) <= 6 and length.isdigit()):
        return None
    if not 0 < int(length) <= SMALL_BODY_BYTES:
        return None
    if CONTROL.search(scope["path"]):
        return None
    if not scope["litestar_app"].state.auth.grants(scope["headers"], "admit"):
        return None
    window_id = scope["path_params"].get("window_id")
    return window_id if isinstance(window_id, str) else None


async def _read_body(receive: Receive) -> tuple[bytes, list[ReceiveMessage]]:
    """The body, and the messages it came in (for the route, should it answer instead). An
    incomplete body (the client left, the body's deadline passed) reads as empty: refused by
    the nesting check's caller, it goes to the route, which meets the same end of it."""
    messages: list[ReceiveMessage] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return b"", messages
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), messages


def _replay(messages: list[ReceiveMessage], receive: Receive) -> Receive:
    """`receive` as the route would have met it: the messages read already, then the rest."""
    queued = list(messages)

    async def replayed() -> ReceiveMessage:
        if queued:
            return queued.pop(0)
        return await receive()

    return replayed
