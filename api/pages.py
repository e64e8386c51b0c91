"""The reviewer's pages: server-rendered HTML (Jinja templates in `api/templates/`), read-only,
behind the `read` scope, each linkable. Every page is a bounded read: a page of windows, one
receipt, a page of quarantine entries or history events; nothing reads a whole window."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, Parameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Response, Template
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from api.auth import requires
from api.presenting import (
    VERDICT_ORDER,
    age,
    bars,
    chart_svg,
    key_fields,
    short,
    side_by_side,
)
from ledger.admissions import check_window_id
from ledger.gate import STATUSES
from ledger.receipts import COUNT_LABELS, GATE_MEANING
from service.composition import Services

HERE = Path(__file__).resolve().parent
PAGE = 50  # rows per page of windows, quarantine entries and history events
PENDING_SHOWN = 50

TEMPLATES = TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine)
STATIC = create_static_files_router(path="/static", directories=[HERE / "static"])

# No control characters in query text: PostgreSQL text cannot hold a NUL (it was a 500), and no
# window id holds one. (?!\n) before $: Python's $ also matches before a final newline.
NO_CONTROL = r"^[^\u0000-\u001f\u007f]*(?!\n)$"
Cursor = Annotated[str | None, Parameter(max_length=128, pattern=NO_CONTROL)]
Version = Annotated[int | None, Parameter(ge=0)]


def _page(name: str, **context: Any) -> Template:
    return Template(template_name=name, context=context)


class PagesController(Controller):
    tags = ["pages"]
    include_in_schema = False
    guards = [requires("read")]

    @get("/", sync_to_thread=True)
    def windows(
        self,
        services: NamedDependency[Services],
        after: FromQuery[Cursor] = None,
        gate: Annotated[str | None, Parameter(max_length=16)] = None,
        q: Annotated[str | None, Parameter(max_length=128, pattern=NO_CONTROL)] = None,
    ) -> Template:
        chosen = gate if gate in STATUSES else None
        items, next_cursor = services.windows(after, PAGE, gate=chosen, search=q or None)
        return _page(
            "windows.html",
            items=items,
            next_cursor=next_cursor,
            after=after,
            gate=chosen,
            q=q or "",
            statuses=STATUSES,
            meaning=GATE_MEANING,
        )

    @get("/windows/{window_id:str}", sync_to_thread=True)
    def window(self, window_id: FromPath[str], services: NamedDependency[Services]) -> Template:
        receipt = services.receipt(check_window_id(window_id))
        gate = services.gate(window_id)
        pending, pending_total = services.read.pending(window_id, PENDING_SHOWN)
        chart = bars(services.read.activity(window_id))
        return _page(
            "window.html",
            window_id=window_id,
            receipt=receipt,
            gate=gate,
            meaning=GATE_MEANING,
            count_labels=COUNT_LABELS,
            check=services.evidence.store.latest(window_id),
            pending=[{**p, "age": age(p["since"])} for p in pending],
            pending_total=pending_total,
            chart=chart,
            chart_svg=chart_svg(chart, f"Arrivals by verdict over time, window {window_id}"),
            verdicts=VERDICT_ORDER,
        )

    @get("/windows/{window_id:str}/quarantine", sync_to_thread=True)
    def quarantine(
        self,
        window_id: FromPath[str],
        services: NamedDependency[Services],
        after: FromQuery[Version] = None,
    ) -> Template:
        receipt = services.receipt(check_window_id(window_id))
        items, next_cursor = services.read.quarantine_queue(window_id, after, PAGE)
        return _page(
            "quarantine.html",
            window_id=window_id,
            receipt=receipt,
            entries=[side_by_side(item) for item in items],
            after=after,
            next_cursor=next_cursor,
        )

    @get("/windows/{window_id:str}/history", sync_to_thread=True)
    def history(
        self,
        window_id: FromPath[str],
        services: NamedDependency[Services],
        after: FromQuery[Version] = None,
    ) -> Template:
        receipt = services.receipt(check_window_id(window_id))
        start = after or 0
        items = services.ledger.history(window_id, after=start, limit=PAGE + 1)
        page = items[:PAGE]
        rows = [{**item, "key_fields": key_fields(item["type"], item["fields"])} for item in page]
        total = max(receipt["events"], page[-1]["version"] if page else 0)
        return _page(
            "history.html",
            window_id=window_id,
            receipt=receipt,
            rows=rows,
            total=total,
            first=page[0]["version"] if page else None,
            last=page[-1]["version"] if page else None,
            previous_after=max(0, start - PAGE) if start > 0 else None,
            next_after=page[-1]["version"] if len(items) > PAGE else None,
            last_after=max(0, total - PAGE),
            short=short,
        )

    @get("/windows/{window_id:str}/verify", sync_to_thread=True)
    def verify(self, window_id: FromPath[str], services: NamedDependency[Services]) -> Template:
        verification, reasons = services.verify(check_window_id(window_id))
        return _page(
            "verify.html",
            window_id=window_id,
            result=verification.as_json(),
            reasons=reasons,
            gate=services.gate(window_id),
        )

    @get("/windows/{window_id:str}/receipt.md", sync_to_thread=True)
    def receipt_markdown(
        self, window_id: FromPath[str], services: NamedDependency[Services]
    ) -> Response[str]:
        markdown = services.receipt_markdown(check_window_id(window_id))
        # text/plain: a browser shows it instead of downloading it.
        return Response(markdown, media_type="text/plain")
