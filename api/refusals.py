"""Bad input refused before Litestar decodes anything of a request: Litestar's `before_request`
hooks run after the guards and before any parameter or body is parsed. A route's own hook
replaces the app's, so the admissions route's hook runs the app's check too (and, having no
guard, checks the caller's token first)."""

from __future__ import annotations

import re
from typing import Any, cast

import msgspec
from litestar import Request, Response
from litestar.exceptions import ValidationException
from litestar.utils.scope.state import ScopeState

from api.bounds import BOUNDED, BUSY, RETRY_AFTER_SECONDS, SMALL_BODY_BYTES, BoundedRequest
from api.schemas import AdmissionRequest
from ledger.admissions import BODY_LEVELS, check_nesting
from ledger.errors import PayloadTooLarge
from ledger.jcs import text_values

# Decoding costs memory by value: up to 145 bytes of resident size a counted bracket or comma
# (`[{},{},...]`) while the body was decoded twice, about 80 since it is decoded once (ADR 0036),
# where the budget's bytes are reckoned at 8 of resident size each (ADR 0029).
VALUE_COST = 24
MAX_VALUES = 1_200_000

strict_admissions = msgspec.json.Decoder(AdmissionRequest).decode

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The scope key of a failure the lean path met after handing the request to the writer
# (ADR 0047): the route's hook raises it, so it meets the route's exception handlers.
LEAN_FAILURE = "ledger.lean_failure"


async def refuse_control_characters(request: Request[Any, Any, Any]) -> None:
    """No path parameter takes a control character: 400, as any bad path parameter. The app's
    hook, for every route: a NUL once reached the static files' `os.stat` (a 500)."""
    # Async, though it never awaits: Litestar runs a sync hook in a worker thread.
    if CONTROL.search(request.scope["path"]):
        raise ValidationException(
            detail="the path holds a control character (U+0000 to U+001F or U+007F), "
            "which no path parameter takes"
        )


async def refuse_deep_admissions(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """The admissions route's hook: the path, then the body's nesting (ADR 0023), before
    Litestar's decoder recurses into it (near 1,000 levels it fails with a RecursionError);
    then what decoding the body will cost (ADR 0029); then the one decode of it (ADR 0036).
    First of all, the token: the route checks the `admit` scope here instead of in a guard, for
    which Litestar copies the route handler on every request (ADR 0039). Before even that, a
    failure the lean path met with the token granted (ADR 0047)."""
    failure = request.scope.pop(LEAN_FAILURE, None)  # type: ignore[misc]
    if failure is not None:
        raise failure
    request.app.state.auth.check(request, "admit")
    await refuse_control_characters(request)
    body = await request.body()
    check_nesting(body, BODY_LEVELS)
    busy = await charge_decoding(request, body)
    if busy is None:
        decode_once(request, body)
    return busy


def decode_once(request: Request[Any, Any, Any], body: bytes) -> None:
    """Decode the body strictly (the contract's types, no coercion) and hand the result to
    Litestar as the request's JSON, which it then passes to the handler as `data` unconverted:
    one decode of the body instead of three passes (Litestar's untyped decode, its lenient
    conversion, the handler's strict decode again). A body the strict decoder refuses is left
    to Litestar and the handler, which answer it as they always have."""
    try:
        strict = strict_admissions(body)
    except msgspec.MsgspecError:
        return
    ScopeState.from_scope(request.scope).json = strict


def decoded_strictly(request: Request[Any, Any, Any], data: AdmissionRequest) -> bool:
    """`data` is what `decode_once` made (not Litestar's lenient conversion)."""
    return ScopeState.from_scope(request.scope).json is data


async def charge_decoding(request: Request[Any, Any, Any], body: bytes) -> Response[Any] | None:
    """A large body is charged to the in-flight budget for its values too, before it is decoded:
    its bytes alone understate what a body of many small values costs (`[{},{},...]`: forty
    times its length). Over MAX_VALUES it is refused (413); when the budget has no room for the
    rest, 503 `busy`, nothing recorded."""
    if len(body) <= SMALL_BODY_BYTES:
        return None  # the hot path: at most a few MB decoded, charged by its bytes
    values = text_values(body)
    if values > MAX_VALUES:
        raise PayloadTooLarge(
            f"the request holds about {values:,} JSON values; a request may hold at most "
            f"{MAX_VALUES:,}"
        )
    bounded = cast("BoundedRequest | None", request.scope.get(BOUNDED))
    if bounded is None or await bounded.top_up(VALUE_COST * values):
        return None
    return Response(
        content=BUSY,
        status_code=503,
        media_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
