"""Errors to HTTP, in one place: the status of each domain error code, and the handlers.

The core's errors carry a code and a detail only; this table is the one place that knows what
HTTP says for each. Every error body is `{"error": code, "detail": sentence, ...}`.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from ledger import errors
from ledger.application.storage import as_storage_failure

log = logging.getLogger("ledger.api")

STATUS_OF: dict[type[errors.LedgerError], int] = {
    errors.InvalidAdmission: 400,
    errors.PayloadTooLarge: 413,
    errors.NestingTooDeep: 400,
    errors.WindowNotFound: 404,
    errors.WindowClosed: 409,
    errors.PublishUnknownPending: 409,
    errors.BusLedgerMismatch: 409,
    errors.GateNotPassed: 409,
    errors.ChainBroken: 409,
    errors.PublishRefused: 503,
    errors.BusUnavailable: 503,
    errors.StorageUnavailable: 503,
    errors.StorageFull: 503,
    errors.Contention: 503,
}

# Litestar's own refusals, named in the same vocabulary.
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def status_of(exc: errors.LedgerError) -> int:
    """The most specific entry of the table for the error's class (500 if none)."""
    for cls in type(exc).__mro__:
        status = STATUS_OF.get(cls)
        if status is not None:
            return status
    return HTTP_500_INTERNAL_SERVER_ERROR


RETRY_AFTER_SECONDS = 1


def ledger_error(_: Request[Any, Any, Any], exc: errors.LedgerError) -> Response[dict[str, Any]]:
    status = status_of(exc)
    # A 503 recorded nothing: say when a retry makes sense.
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return Response(exc.as_json(), status_code=status, headers=headers)


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    problems = [
        f"{e.get('message', '')}".strip() + (f" ({e['key']})" if e.get("key") else "")
        for e in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(e, dict)
    ]
    detail = "; ".join(p for p in problems if p) or str(exc.detail)
    return Response({"error": "invalid_request", "detail": detail}, status_code=400)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return Response({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code)


def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    storage = as_storage_failure(exc)
    if storage is not None:  # the database is down, unreachable, full or read-only
        log.warning("storage failure: %s", exc)
        return ledger_error(request, storage)
    # Commands record in one transaction: a failure before commit recorded nothing.
    log.exception("unexpected error", exc_info=exc)
    return Response(
        {"error": "internal_error", "detail": "unexpected error; nothing was recorded, retry"},
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    errors.LedgerError: ledger_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected,
}
