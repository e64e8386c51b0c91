"""One controller per resource. The ledger is sync: read handlers are sync and run in threads;
the admissions handler is async (it decodes the body strictly itself), hands a small request to
the group-commit thread and awaits its commit on the event loop, and runs a large one in a
thread."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, Parameter

from api.auth import requires
from api.delivery import within_deadline
from api.lean import answer, lean_admissions, prepared
from api.metrics import LedgerMetrics
from api.refusals import decoded_strictly, refuse_deep_admissions, strict_admissions
from api.schemas import (
    AcceptBusDuplicatesIn,
    AcceptBusDuplicatesOut,
    AdmissionRequest,
    AdmissionResponse,
    AdmittedPage,
    ErrorBody,
    GateNotPassed,
    GateOut,
    Health,
    HistoryPage,
    KeyPage,
    QuarantinePage,
    Receipt,
    ReconcileOut,
    VerifyOut,
    WindowPage,
)
from ledger.admissions import NAME_PATTERN, check_window_id
from ledger.application.bus_duplicates import DEFAULT_REASON
from ledger.errors import InvalidAdmission, WindowNotFound
from service.composition import Services

WindowId = Annotated[str, Parameter(pattern=NAME_PATTERN, max_length=128)]
# Positions are bigints in the database: a larger cursor is bad input, not a driver overflow.
After = Annotated[int | None, Parameter(ge=0, le=2**63 - 1, required=False)]
# Window ids as query values (a cursor, a filter) obey the same pattern as in paths.
WindowIdQuery = Annotated[
    str | None, Parameter(pattern=NAME_PATTERN, max_length=128, required=False)
]
Limit = Annotated[int, Parameter(ge=1, le=1000)]
# Injected by name from the app's dependencies (api.app).
ServicesDep = NamedDependency[Services]
MetricsDep = NamedDependency[LedgerMetrics]


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    specs = {code: ResponseSpec(data_container=ErrorBody, description="error") for code in codes}
    specs[400] = ResponseSpec(data_container=ErrorBody, description="bad input")
    return specs


class AdmissionsController(Controller):
    path = "/v1/windows/{window_id:str}/admissions"
    tags = ["admissions"]
    # No guard: the route's hook checks the `admit` scope before anything else (ADR 0039).

    @post(
        "/",
        status_code=200,
        responses=_errors(401, 403, 409, 413, 503),
        summary="Admit a batch of events into a window (taken whole or refused whole)",
        before_request=refuse_deep_admissions,
        # A plain admission is answered by the lean path, ahead of Litestar's request
        # machinery; everything else comes here (ADR 0047).
        middleware=[lean_admissions],
    )
    async def admit(
        self,
        window_id: WindowId,
        data: JSONBody[AdmissionRequest],
        request: Request[Any, Any, Any],
    ) -> AdmissionResponse:
        # Taken from the app's state, not injected: two dependencies cost Litestar a task group
        # on every request, the hottest path of the service.
        services: Services = request.app.state.services
        metrics: LedgerMetrics = request.app.state.metrics
        # The route's hook decoded the body strictly (ADR 0036). Otherwise `data` is Litestar's
        # lenient conversion ("1" -> 1) of a body the strict decoder refused; the contract says
        # wrong types are a 400, so the strict decoder says why. `data` declares the schema for
        # the OpenAPI document.
        if decoded_strictly(request, data):
            strict = data
        else:
            try:
                strict = strict_admissions(await request.body())
            except msgspec.ValidationError as exc:
                raise InvalidAdmission(str(exc)) from None
        admissions = await prepared(window_id, strict.events)
        # The request waits for its group's commit without holding a thread.
        pending = services.submit_admission(window_id, admissions)
        if pending is not None:
            results = await within_deadline(
                pending,
                services.settings.request_timeout_seconds,
                request.receive,
                request.app.state.deliveries,
            )
        else:
            # A sealed window's guard may read its history: in a thread, not on the event loop.
            results = await anyio.to_thread.run_sync(lambda: services.admit(window_id, admissions))
        return answer(window_id, results, metrics)


class WindowsController(Controller):
    path = "/v1/windows"
    tags = ["windows"]

    @get(
        "/",
        sync_to_thread=True,
        guards=[requires("read")],
        responses=_errors(401, 403),
        summary="List windows",
    )
    def list_windows(
        self, services: ServicesDep, after: WindowIdQuery = None, limit: Limit = 100
    ) -> WindowPage:
        items, next_cursor = services.windows(after, limit)
        return msgspec.convert({"items": items, "next": next_cursor}, WindowPage)

    @get(
        "/{window_id:str}",
        sync_to_thread=True,
        guards=[requires("read")],
        responses=_errors(401, 403, 404),
        summary="One window's summary (its receipt)",
    )
    def get_window(self, window_id: WindowId, services: ServicesDep) -> Receipt:
        return msgspec.convert(services.receipt(check_window_id(window_id)), Receipt)

    @post(
        "/{window_id:str}/close",
        status_code=200,
        sync_to_thread=True,
        guards=[requires("operate")],
        responses=_errors(401, 403, 404, 409, 503),
        summary="Close the window",
    )
    def close(self, window_id: WindowId, services: ServicesDep) -> Receipt:
        return msgspec.convert(services.close_window(check_window_id(window_id)), Receipt)

    @get(
        "/{window_id:str}/receipt",
        sync_to_thread=True,
        guards=[requires("read")],
        responses=_errors(401, 403, 404),
        summary="The receipt; Accept: text/markdown gives Markdown",
        media_type="application/json",
    )
    def receipt(
        self, window_id: WindowId, services: ServicesDep, request: Request[Any, Any, Any]
    ) -> Response[Any]:
        if "text/markdown" in request.headers.get("accept", ""):
            markdown = services.receipt_markdown(check_window_id(window_id))
            return Response(markdown, media_type="text/markdown")
        receipt = services.receipt(check_window_id(window_id))
        return Response(msgspec.convert(receipt, Receipt))

    @get(
        "/{window_id:str}/gate",
        sync_to_thread=True,
        guards=[requires("read")],
        responses=_errors(401, 403, 404),
        summary="The window's gate",
    )
    def gate(self, window_id: WindowId, services: ServicesDep) -> GateOut:
        return msgspec.convert(services.gate(check_window_id(window_id)), GateOut)

    @get(
        "/{window_id:str}/admitted",
        sync_to_thread=True,
        guards=[requires("read")],
        responses={
            **_errors(401, 403, 404),
            409: ResponseSpec(data_container=GateNotPassed, description="gate is not PASS"),
        },
        summary="Admitted events in offset order, only for a PASS window",
    )
    def admitted(
        self, window_id: WindowId, services: ServicesDep, after: After = None, limit: Limit = 100
    ) -> AdmittedPage:
        items, next_cursor = services.admitted(check_window_id(window_id), after, limit)
        return msgspec.convert({"items": items, "next": next_cursor}, AdmittedPage)

    @get(
        "/{window_id:str}/history",
        sync_to_thread=True,
        guards=[requires("read")],
        responses=_errors(401, 403, 404),
        summary="The window's domain events in order, with their digests",
    )
    def history(
        self, window_id: WindowId, services: ServicesDep, after: After = None, limit: Limit = 100
    ) -> HistoryPage:
        check_window_id(window_id)
        items = services.ledger.history(window_id, after=after or 0, limit=limit + 1)
        if not items and after:
            services.ledger.history(window_id, after=0, limit=1)  # 404 for an unknown window
        page = items[:limit]
        next_cursor = str(page[-1]["version"]) if len(items) > limit else None
        return msgspec.convert({"items": page, "next": next_cursor}, HistoryPage)

    @get(
        "/{window_id:str}/verify",
        sync_to_thread=True,
        guards=[requires("read")],
        responses=_errors(401, 403, 404),
        summary="Recompute the hash chain from the stored events",
    )
    def verify(self, window_id: WindowId, services: ServicesDep) -> VerifyOut:
        verification, _reasons = services.verify(check_window_id(window_id))
        return msgspec.convert(verification.as_json(), VerifyOut)

    @post(
        "/{window_id:str}/reconcile",
        status_code=200,
        sync_to_thread=True,
        guards=[requires("operate")],
        responses=_errors(401, 403, 404, 503),
        summary="Resolve UNKNOWN identities (and adopt lost publishes) through the bus",
    )
    def reconcile(self, window_id: WindowId, services: ServicesDep) -> ReconcileOut:
        return msgspec.convert(services.reconcile(check_window_id(window_id)), ReconcileOut)

    @post(
        "/{window_id:str}/bus-duplicates/accept",
        status_code=200,
        sync_to_thread=True,
        guards=[requires("operate")],
        responses=_errors(401, 403, 404, 409, 503),
        summary="Accept the extra bus messages of admitted identities (duplicate window ended)",
        description="Records one BusDuplicateAccepted per extra bus message whose identity the "
        "window admitted at another offset and whose body is the admitted payload; an extra "
        "with another payload is refused (listed, nothing recorded). Accepting again records "
        "nothing new. A closed window answers 409 window_closed (ADR 0028).",
    )
    def accept_bus_duplicates(
        self,
        window_id: WindowId,
        services: ServicesDep,
        request: Request[Any, Any, Any],
        data: JSONBody[AcceptBusDuplicatesIn | None] = None,
    ) -> AcceptBusDuplicatesOut:
        caller = request.app.state.auth.caller(request)
        by = f"{data.by} ({caller})" if data is not None and data.by else caller
        reason = (data.reason if data is not None else None) or DEFAULT_REASON
        result = services.accept_bus_duplicates(
            check_window_id(window_id), accepted_by=by, reason=reason
        )
        return msgspec.convert(result, AcceptBusDuplicatesOut)


class QuarantineController(Controller):
    path = "/v1/quarantine"
    tags = ["quarantine"]
    guards = [requires("read")]

    @get("/", sync_to_thread=True, responses=_errors(401, 403), summary="The quarantine queue")
    def queue(
        self,
        services: ServicesDep,
        window_id: WindowIdQuery = None,
        after: After = None,
        limit: Limit = 100,
    ) -> QuarantinePage:
        items, next_cursor = services.read.quarantine_queue(window_id, after, limit)
        return msgspec.convert({"items": items, "next": next_cursor}, QuarantinePage)


class SystemController(Controller):
    tags = ["system"]

    @get(
        "/health",
        responses={503: ResponseSpec(data_container=Health, description="storage down")},
        summary="Liveness, storage and bus: the status for anyone, the parts for `read`",
    )
    async def health(
        self, services: ServicesDep, request: Request[Any, Any, Any]
    ) -> Response[Health]:
        # In threads of its own, never queued behind the handlers that wait on the database
        # (ADR 0024); the report itself takes at most about a second.
        report = await anyio.to_thread.run_sync(
            services.health, limiter=request.app.state.health_threads
        )
        if not request.app.state.auth.allows(request, "read"):
            report = {"status": report["status"]}
        status_code = 503 if report["status"] == "unavailable" else 200
        return Response(msgspec.convert(report, Health), status_code=status_code)

    @get(
        "/metrics",
        sync_to_thread=True,
        guards=[requires("read")],
        responses=_errors(401, 403),
        media_type="text/plain; version=0.0.4",
        summary="Prometheus metrics",
    )
    def metrics(self, metrics: MetricsDep) -> Response[bytes]:
        from prometheus_client import generate_latest

        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")


class KeysController(Controller):
    path = "/v1/keys"
    tags = ["evidence"]
    guards = [requires("read")]

    @get("/", sync_to_thread=True, responses=_errors(401, 403), summary="Receipt signing keys")
    def keys(self, services: ServicesDep) -> KeyPage:
        return msgspec.convert({"items": services.keys(), "next": None}, KeyPage)


__all__ = [
    "AdmissionsController",
    "KeysController",
    "QuarantineController",
    "SystemController",
    "WindowNotFound",
    "WindowsController",
]
