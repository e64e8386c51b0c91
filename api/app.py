"""The HTTP app factory: `create_app()` (settings from the environment); `ledger serve` starts
`serve_app`, the same app for a process of its own, as "api.app:serve_app" with factory=True.
The services it serves are built by the composition root (`service.composition`) when the app
starts; nothing connects at import."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from api.auth import TokenAuth
from api.bounds import BodyBudget, bound_bodies
from api.controllers import (
    AdmissionsController,
    KeysController,
    QuarantineController,
    SystemController,
    WindowsController,
)
from api.delivery import Deliveries
from api.errors import EXCEPTION_HANDLERS
from api.metrics import LedgerMetrics
from api.pages import STATIC, TEMPLATES, PagesController
from api.refusals import refuse_control_characters
from api.shutdown import bound_shutdown
from service.composition import Services, build_services
from service.settings import Settings
from service.tokens import parse_tokens

# A whole batch may hold up to 1,000 events; each payload is capped at 1 MiB on its own.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
# `/health` runs in threads of its own, never queued behind handlers waiting on the database.
HEALTH_THREADS = 4


def serve_app() -> Litestar:
    """The app of a `ledger serve` process (each worker's): `create_app` that also takes what
    exists once it has started out of the cycle collector's reach (ADR 0031)."""
    return create_app(own_process=True)


def create_app(
    settings: Settings | None = None,
    services: Services | None = None,
    *,
    own_process: bool = False,
) -> Litestar:
    """Build the service from settings (default: the environment). Nothing connects until the
    app starts. `own_process`: the app is all the process serves (`serve_app`)."""
    settings = settings or Settings.from_env()
    auth = TokenAuth(parse_tokens(settings.api_tokens))
    holder: dict[str, Any] = {}
    # Bytes of request bodies read or being processed at once in this process (ADR 0029).
    budget = BodyBudget(int(settings.max_inflight_body_mb * 1024 * 1024))
    bounded = bound_bodies(
        budget, body_timeout=settings.body_timeout_seconds, max_body_bytes=MAX_REQUEST_BYTES
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Under uvicorn: a second SIGTERM, or an overrun of the shutdown deadline, exits anyway.
        bound_shutdown(settings.shutdown_timeout_seconds)
        built = services or build_services(settings)
        holder["services"] = app.state.services = built
        holder["metrics"] = app.state.metrics = LedgerMetrics(built)
        app.state.health_threads = anyio.CapacityLimiter(HEALTH_THREADS)
        # The group commit's answers reach this loop in batches (ADR 0046).
        app.state.deliveries = Deliveries(asyncio.get_running_loop())
        built.start_following()
        if own_process:
            # Modules, the app, its routes and the services: ~100,000 long-lived objects that
            # every full collection walked again, stalling the loop and the group-commit writer
            # for tens of ms (the p99 of single-event POSTs: ADR 0031). Frozen, a collection
            # walks only what requests make.
            gc.freeze()
        try:
            yield
        finally:
            if own_process:
                gc.unfreeze()
            built.close()

    def provide_services() -> Services:
        return holder["services"]  # type: ignore[no-any-return]

    def provide_metrics() -> LedgerMetrics:
        return holder["metrics"]  # type: ignore[no-any-return]

    def measured(app: Any) -> Any:
        # Litestar wraps each route on its own: one measured app per route, made at first use.
        wrapped: Any = None

        async def middleware(scope: Any, receive: Any, send: Any) -> None:
            nonlocal wrapped
            if wrapped is None:
                metrics = holder.get("metrics")
                if metrics is None:  # not started yet
                    await app(scope, receive, send)
                    return
                wrapped = metrics.middleware(app)
            await wrapped(scope, receive, send)

        return middleware

    return Litestar(
        route_handlers=[
            AdmissionsController,
            WindowsController,
            QuarantineController,
            SystemController,
            KeysController,
            PagesController,
            STATIC,
        ],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "metrics": Provide(provide_metrics, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=refuse_control_characters,
        # Outermost first: what the bounds answer (503 busy, 408) is measured too.
        middleware=[measured, bounded],
        lifespan=[lifespan],
        state=State({"auth": auth}),
        request_max_body_size=MAX_REQUEST_BYTES,
        template_config=TEMPLATES,
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
