"""The reviewer dashboard: server-rendered HTML, every window with its gate and its evidence."""

from __future__ import annotations

from html import escape
from typing import Annotated
from urllib.parse import quote

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, Parameter
from litestar.response import Response

from api.auth import requires
from ledger.receipts import COUNT_LABELS, GATE_MEANING
from service.composition import Services

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2330;max-width:70rem}
table{border-collapse:collapse;width:100%}th,td{padding:.4rem .6rem;border-bottom:1px solid #dde;
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.gate{font-weight:600;padding:.1rem .5rem;border-radius:.3rem}
.PASS{background:#d8f5dd;color:#145c23}.FAIL{background:#fadadd;color:#8a1020}
.BLOCKED{background:#fff1cc;color:#7a5200}.OPEN{background:#e4ecfb;color:#1f3f85}
code{font-size:.85em}nav a{margin-right:1rem}
"""


def _page(title: str, body: str) -> Response[str]:
    html = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}"
        f"</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return Response(html, media_type="text/html")


def _gate(gate: str) -> str:
    return f"<span class='gate {escape(gate)}'>{escape(gate)}</span>"


class DashboardController(Controller):
    tags = ["dashboard"]
    include_in_schema = False
    guards = [requires("read")]

    @get("/", sync_to_thread=True)
    def index(
        self,
        services: NamedDependency[Services],
        after: FromQuery[str | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 200,
    ) -> Response[str]:
        items, next_cursor = services.windows(after, limit)
        rows = "".join(
            f"<tr><td><a href='/windows/{quote(w['window_id'])}'>{escape(w['window_id'])}</a></td>"
            f"<td>{escape(w['status'])}</td><td>{_gate(w['gate'])}</td>"
            f"<td class='n'>{w['counts']['admitted']}</td>"
            f"<td class='n'>{w['counts']['duplicates']}</td>"
            f"<td class='n'>{w['counts']['quarantined']}</td>"
            f"<td class='n'>{w['counts']['pending_unknown']}</td>"
            f"<td><a href='/v1/quarantine?window_id={quote(w['window_id'])}'>quarantine</a> "
            f"<a href='/v1/windows/{quote(w['window_id'])}/history'>history</a></td></tr>"
            for w in items
        )
        more = f"<p><a href='/?after={quote(next_cursor)}'>next page</a></p>" if next_cursor else ""
        body = (
            "<h1>Admission ledger</h1><p>Every run window with its gate. Downstream may read a "
            "window only when its gate says PASS.</p>"
            "<table><thead><tr><th>window</th><th>status</th><th>gate</th><th>admitted</th>"
            "<th>duplicates</th><th>quarantined</th><th>pending unknown</th><th>evidence</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>{more}"
            + ("" if items else "<p>No windows yet.</p>")
        )
        return _page("Admission ledger", body)

    @get("/windows/{window_id:str}", sync_to_thread=True)
    def window(
        self, window_id: FromPath[str], services: NamedDependency[Services]
    ) -> Response[str]:
        receipt = services.receipt(window_id)
        gate = services.gate(window_id)
        q = quote(window_id)
        counts = "".join(
            f"<tr><td>{escape(label)}</td><td class='n'>{receipt['counts'][key]}</td></tr>"
            for key, label in COUNT_LABELS
        )
        reasons = "".join(f"<li>{escape(r)}</li>" for r in gate["reasons"])
        sources = "".join(
            f"<tr><td><code>{escape(p)}</code></td><td class='n'>{r['min']}</td>"
            f"<td class='n'>{r['max']}</td></tr>"
            for p, r in receipt["source_offsets"].items()
        )
        bus = receipt["bus_offsets"]
        body = (
            f"<nav><a href='/'>all windows</a><a href='/v1/quarantine?window_id={q}'>quarantine"
            f"</a><a href='/v1/windows/{q}/history'>history</a>"
            f"<a href='/v1/windows/{q}/verify'>verify</a>"
            f"<a href='/v1/windows/{q}/receipt'>receipt (JSON)</a></nav>"
            f"<h1>Window <code>{escape(window_id)}</code></h1>"
            f"<p>Status {escape(receipt['status'])}, gate {_gate(gate['status'])}: "
            f"{escape(GATE_MEANING.get(gate['status'], ''))}</p>"
            + (f"<ul class='reasons'>{reasons}</ul>" if reasons else "")
            + f"<table><tbody>{counts}</tbody></table>"
            f"<p>Bus offsets {bus['first'] if bus['first'] is not None else '-'} to "
            f"{bus['last'] if bus['last'] is not None else '-'}; opened "
            f"{escape(receipt['opened_at'])}, closed {escape(receipt['closed_at'] or '-')}; "
            f"{receipt['events']} events; chain head <code>{escape(receipt['chain_head'])}</code>"
            "</p>"
            + (
                "<h2>Source offsets</h2><table><thead><tr><th>partition</th><th>min</th>"
                f"<th>max</th></tr></thead><tbody>{sources}</tbody></table>"
                if sources
                else ""
            )
        )
        return _page(f"Window {window_id}", body)
