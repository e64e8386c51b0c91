"""The composition root of the HTTP service: `create_app(settings)` builds everything."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from api.auth import TokenAuth, parse_tokens
from api.controllers import (
    AdmissionsController,
    QuarantineController,
    SystemController,
    WindowsController,
)
from api.dashboard import DashboardController
from api.metrics import LedgerMetrics
from ledger.bootstrap import Services, build_services
from ledger.errors import LedgerError
from ledger.settings import Settings

log = logging.getLogger("ledger.api")

# A whole batch may hold up to 1,000 events; each payload is capped at 1 MiB on its own.
MAX_REQUEST_BYTES = 16 * 1024 * 1024

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def _ledger_error(_: Request[Any, Any, Any], exc: LedgerError) -> Response[dict[str, Any]]:
    return Response(exc.as_json(), status_code=exc.status)


def _validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    problems = [
        f"{e.get('message', '')}".strip() + (f" ({e['key']})" if e.get("key") else "")
        for e in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(e, dict)
    ]
    detail = "; ".join(p for p in problems if p) or str(exc.detail)
    return Response({"error": "invalid_request", "detail": detail}, status_code=400)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return Response({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code)


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # Commands record in one transaction: a failure before commit recorded nothing.
    log.exception("unexpected error", exc_info=exc)
    return Response(
        {"error": "internal_error", "detail": "unexpected error; nothing was recorded, retry"},
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


def create_app(settings: Settings, services: Services | None = None) -> Litestar:
    """Build the service from settings. Nothing connects until the app starts."""
    auth = TokenAuth(parse_tokens(settings.api_tokens))
    holder: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        built = services or build_services(settings)
        holder["services"] = built
        holder["metrics"] = LedgerMetrics(built)
        built.start_following()
        try:
            yield
        finally:
            built.close()

    def provide_services() -> Services:
        return holder["services"]  # type: ignore[no-any-return]

    def provide_metrics() -> LedgerMetrics:
        return holder["metrics"]  # type: ignore[no-any-return]

    def measured(app: Any) -> Any:
        async def middleware(scope: Any, receive: Any, send: Any) -> None:
            metrics = holder.get("metrics")
            if metrics is None:
                await app(scope, receive, send)
            else:
                await metrics.middleware(app)(scope, receive, send)

        return middleware

    return Litestar(
        route_handlers=[
            AdmissionsController,
            WindowsController,
            QuarantineController,
            SystemController,
            DashboardController,
        ],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "metrics": Provide(provide_metrics, sync_to_thread=False),
        },
        exception_handlers={
            LedgerError: _ledger_error,
            ValidationException: _validation_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        middleware=[measured],
        lifespan=[lifespan],
        state=State({"auth": auth}),
        request_max_body_size=MAX_REQUEST_BYTES,
        openapi_config=OpenAPIConfig(
            title="Admission ledger",
            version="1.0.0",
            description="Exactly-once admission for at-least-once event streams. "
            "The behaviour contract is shared/spec/contract.md.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
        debug=False,
    )
