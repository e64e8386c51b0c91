"""The reviewer's pages in a real browser (Debian's Chromium driven by Playwright) against a real
`ledger serve`: every figure and badge a page shows is the API's, the pages link up, they pass
axe-core's WCAG 2.1 A/AA rules, work from the keyboard and print the window as one A4 page.

Every HTML page visited is checked with axe and photographed (test-output/<test>/NN-page.png).
With LEDGER_README_SCREENSHOTS=1 the walk on SQLite also writes the README's two screenshots
(docs/images/window-page.png, docs/images/quarantine-page.png).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from service.settings import Settings
from tests.support import ROOT
from tests.support.browser import VIEWPORT, Screenshots, axe_violations, chromium
from tests.support.builders import event
from tests.support.http import admit, close, eventually, history, read_side_caught_up
from tests.support.nats import AnyNats, unique_stream
from tests.support.server import RunningServer, running_server
from tests.support.tamper import SEALED_ADMISSIONS, edit_admitted_payload_in_place

README_IMAGES = ROOT / "docs" / "images"
PAGE = 50  # history rows per page (api.pages.PAGE)

# The window the reviewer walks through: 116 admitted, 2 exact duplicates, 3 quarantined
# arrivals of 2 identities (one changes a top-level field, twice; one a nested field); closed.
REVIEWED = "orders-2026-11-01"
OTHERS_OPEN = ("orders-2026-11-02", "refunds-2026-11-02")
OTHER_CLOSED = "refunds-2026-11-01"
ADMITTED = 116
REVIEWED_EVENTS = 1 + ADMITTED + 2 + 3 + 1  # opened, admitted, duplicates, quarantined, closed
CHANGED_FIELD = {"e003": "amount_cents", "e004": "tier"}  # event id -> the field that differs
UNCHANGED_FIELD = "currency"


def order(i: int, **changes: Any) -> dict[str, Any]:
    payload = {
        "amount_cents": 1000 + i,
        "currency": "EUR",
        "customer": {"id": f"c-{i % 7}", "tier": "gold"},
        **changes,
    }
    extra = {} if i % 3 == 0 else {"source": {"partition": f"orders-{i % 2}", "offset": 5000 + i}}
    return event(f"e{i:03d}", payload, **extra)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(request.node.name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"  # `ledger serve` migrates SQLite itself


def looked_at(page: Page, shots: Screenshots, name: str) -> None:
    """Photograph the page, then hold it to WCAG 2.1 A/AA."""
    shots.take(page, name)
    assert axe_violations(page) == []


def api(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60.0)


# --- what a page shows, read in one go ------------------------------------------------------


def window_rows(page: Page) -> dict[str, dict[str, Any]]:
    rows: list[dict[str, Any]] = page.eval_on_selector_all(
        "tr[data-window]",
        """rows => rows.map(r => ({
            id: r.dataset.window,
            gate: r.querySelector("[data-gate]").textContent.trim(),
            counts: Object.fromEntries([...r.querySelectorAll("td[data-count]")]
                .map(td => [td.dataset.count, Number(td.textContent.trim())])),
        }))""",
    )
    return {r["id"]: {"gate": r["gate"], "counts": r["counts"]} for r in rows}


def api_window_rows(client: httpx.Client) -> dict[str, dict[str, Any]]:
    shown = ("admitted", "duplicates", "quarantined", "publish_unknown", "pending_unknown")
    items = client.get("/v1/windows", params={"limit": 1000}).json()["items"]
    return {
        w["window_id"]: {"gate": w["gate"], "counts": {k: w["counts"][k] for k in shown}}
        for w in items
    }


def history_rows(page: Page) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = page.eval_on_selector_all(
        "tr[data-version]",
        """rows => rows.map(r => ({
            version: Number(r.dataset.version),
            type: r.querySelector("td").textContent.trim(),
            digest: r.querySelector(".digest").dataset.full,
            title: r.querySelector(".digest").title,
        }))""",
    )
    return rows


def texts(page: Page, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def field(page: Page, name: str) -> str:
    return page.locator(f'[data-field="{name}"]').inner_text().strip()


# --- 1. the walk ------------------------------------------------------------------------------


def seed(client: httpx.Client) -> None:
    admit(client, REVIEWED, *(order(i) for i in range(1, ADMITTED + 1)))
    admit(
        client,
        REVIEWED,
        order(1),
        order(2),  # exact duplicates
        order(3, amount_cents=1),
        order(3, amount_cents=1),  # the same mismatch twice: one entry, two occurrences
        order(4, customer={"id": "c-4", "tier": "silver"}),
    )
    close(client, REVIEWED)
    admit(client, OTHER_CLOSED, event("r1"), event("r2"))
    close(client, OTHER_CLOSED)
    for window_id in OTHERS_OPEN:
        admit(client, window_id, event("x"))
    for window_id in (REVIEWED, OTHER_CLOSED, *OTHERS_OPEN):
        read_side_caught_up(client, window_id)


def check_windows_page(page: Page, shots: Screenshots, client: httpx.Client, url: str) -> None:
    page.goto(url + "/")
    looked_at(page, shots, "windows")
    expected = api_window_rows(client)
    assert set(expected) == {REVIEWED, OTHER_CLOSED, *OTHERS_OPEN}
    assert window_rows(page) == expected

    # Keyboard: the first Tab lands on the skip link, which shows where focus is and leads to
    # the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    page.select_option("#gate", "PASS")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/?*gate=PASS*")
    looked_at(page, shots, "windows-pass")
    passed = {w for w, row in expected.items() if row["gate"] == "PASS"}
    assert passed == {REVIEWED, OTHER_CLOSED}
    assert set(window_rows(page)) == passed

    page.select_option("#gate", "")
    page.fill("#q", "refunds")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/?*q=refunds*")
    looked_at(page, shots, "windows-search")
    assert set(window_rows(page)) == {w for w in expected if "refunds" in w}
    assert len(window_rows(page)) == 2

    page.get_by_role("link", name="Clear filters").click()
    page.wait_for_url(url + "/")
    assert set(window_rows(page)) == set(expected)


def check_window_page(page: Page, shots: Screenshots, receipt: dict[str, Any]) -> None:
    looked_at(page, shots, "window")
    assert page.locator("h1 [data-gate]").inner_text() == receipt["gate"] == "PASS"
    shown_counts = {
        key: int(page.locator(f'tr[data-count="{key}"] td').inner_text())
        for key in receipt["counts"]
    }
    assert shown_counts == receipt["counts"]
    assert receipt["counts"]["admitted"] == ADMITTED
    assert receipt["counts"]["duplicates"] == 2
    assert receipt["counts"]["quarantined"] == 3
    assert field(page, "status") == receipt["status"] == "CLOSED"
    assert int(field(page, "events")) == receipt["events"] == REVIEWED_EVENTS
    assert field(page, "chain_head") == receipt["chain_head"]
    bus = receipt["bus_offsets"]
    assert field(page, "bus_offsets") == f"{bus['first']} to {bus['last']}"
    assert field(page, "key_id") == receipt["signature"]["key_id"]
    sources: list[list[str]] = page.eval_on_selector_all(
        "table.sources tbody tr",
        "rows => rows.map(r => [...r.children].map(c => c.textContent.trim()))",
    )
    assert {p: {"min": int(lo), "max": int(hi)} for p, lo, hi in sources} == receipt[
        "source_offsets"
    ]
    assert set(receipt["source_offsets"]) == {"orders-0", "orders-1"}


def check_quarantine_page(page: Page, shots: Screenshots, client: httpx.Client) -> None:
    looked_at(page, shots, "quarantine")
    queue = client.get("/v1/quarantine", params={"window_id": REVIEWED}).json()["items"]
    by_identity = {q["identity"]: q for q in queue}
    articles = page.locator("article[data-identity]")
    assert sorted(articles.evaluate_all("a => a.map(x => x.dataset.identity)")) == sorted(
        by_identity
    )
    assert sorted(q["occurrences"] for q in queue) == [1, 2]
    for article in articles.all():
        entry = by_identity[article.get_attribute("data-identity") or ""]
        assert (
            int(article.locator('[data-field="occurrences"]').inner_text()) == entry["occurrences"]
        )
        changed = CHANGED_FIELD[entry["event_id"]]
        assert article.locator('[data-field="changed"]').inner_text().endswith(changed)
        sides = article.locator("section")
        assert sides.count() == 2  # the original and the received payload
        for side in sides.all():
            payload = side.locator("pre.payload").inner_text()
            marked = " ".join(side.locator("mark.changed").all_inner_texts())
            assert f'"{changed}"' in marked
            assert f'"{UNCHANGED_FIELD}"' in payload and f'"{UNCHANGED_FIELD}"' not in marked
        original, received = (s.locator("pre.payload").inner_text() for s in sides.all())
        assert original != received


def check_history_page(
    page: Page, shots: Screenshots, name: str, versions: range, stored: dict[int, Any]
) -> None:
    looked_at(page, shots, name)
    rows = history_rows(page)
    assert [r["version"] for r in rows] == list(versions)
    for row in rows:
        item = stored[row["version"]]
        assert (row["type"], row["digest"], row["title"]) == (
            item["type"],
            item["digest"],
            item["digest"],
        )


def test_a_reviewer_walks_from_the_windows_to_a_window_and_its_evidence_seeing_the_apis_figures(
    page: Page, shots: Screenshots, migrated: Settings, signing_key: str, backend: str
) -> None:
    env = {"LEDGER_SIGNING_KEY": signing_key}
    with running_server(migrated.database_url, extra_env=env) as server, api(server) as client:
        seed(client)
        check_windows_page(page, shots, client, server.url)

        page.locator(f'tr[data-window="{REVIEWED}"]').get_by_role(
            "link", name=REVIEWED, exact=True
        ).click()
        page.wait_for_url(f"**/windows/{REVIEWED}")
        receipt = client.get(f"/v1/windows/{REVIEWED}/receipt").json()
        assert "signature" in receipt
        check_window_page(page, shots, receipt)

        page.get_by_role("link", name="Quarantine (3 arrivals)").click()
        page.wait_for_url(f"**/windows/{REVIEWED}/quarantine")
        check_quarantine_page(page, shots, client)

        page.get_by_role("link", name=REVIEWED, exact=True).click()  # the breadcrumb
        page.get_by_role("link", name=f"History ({REVIEWED_EVENTS} events)").click()
        page.wait_for_url(f"**/windows/{REVIEWED}/history")
        stored = {item["version"]: item for item in history(client, REVIEWED)}
        assert len(stored) == REVIEWED_EVENTS
        check_history_page(page, shots, "history", range(1, PAGE + 1), stored)

        # Focusing a shortened digest shows it whole.
        digest = page.locator("tr[data-version] .digest").first
        assert digest.locator(".full").is_hidden()
        digest.focus()
        assert digest.locator(".full").is_visible()
        assert digest.locator(".short").is_hidden()
        assert digest.locator(".full").inner_text() == stored[1]["digest"]

        page.get_by_role("link", name="Next page").first.click()
        page.wait_for_url("**/history?after=50")
        check_history_page(page, shots, "history-next", range(PAGE + 1, 2 * PAGE + 1), stored)
        page.get_by_role("link", name="Previous page").first.click()
        page.wait_for_url("**/history?after=0")
        check_history_page(page, shots, "history-previous", range(1, PAGE + 1), stored)
        page.get_by_role("link", name="Last page").click()
        last = range(REVIEWED_EVENTS - PAGE + 1, REVIEWED_EVENTS + 1)
        page.wait_for_url(f"**/history?after={last.start - 1}")
        check_history_page(page, shots, "history-last", last, stored)
        assert page.get_by_role("link", name="Next page").count() == 0
        assert stored[REVIEWED_EVENTS]["type"] == "WindowClosed"

        version = last.start + 7
        with page.expect_response(re.compile(r"/v1/windows/.*/history\?")) as answer:
            page.get_by_role("link", name=f"Event {version} as JSON").click()
        assert answer.value.json()["items"] == [stored[version]]
        shots.take(page, "history-event-json")

        page.goto(f"{server.url}/windows/{REVIEWED}")
        with page.expect_response(re.compile(r"/receipt\.md$")) as answer:
            page.get_by_role("link", name="Receipt as Markdown").click()
        shots.take(page, "receipt-markdown")
        markdown = page.locator("body").inner_text()
        assert markdown.strip() == answer.value.text().strip()
        assert f"# Receipt for window `{REVIEWED}`" in markdown
        for label, count in (
            ("Admitted (published once, reconciled ones included)", ADMITTED),
            ("Exact duplicates absorbed", 2),
            ("Quarantined (same identity, different payload)", 3),
        ):
            assert f"| {label} | {count} |" in markdown
        assert receipt["chain_head"] in markdown

    if os.environ.get("LEDGER_README_SCREENSHOTS") == "1" and backend == "sqlite":
        README_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shots.taken["window"], README_IMAGES / "window-page.png")
        shutil.copyfile(shots.taken["quarantine"], README_IMAGES / "quarantine-page.png")


# --- 2. BLOCKED ---------------------------------------------------------------------------------


def test_a_blocked_window_says_why_and_lists_each_pending_identity_with_its_age(
    page: Page, shots: Screenshots, sqlite_url: str, signing_key: str, nats_server: AnyNats
) -> None:
    nats_server.require_control()
    stream, prefix = unique_stream()
    env = {
        "LEDGER_SIGNING_KEY": signing_key,
        "LEDGER_NATS_STREAM": stream,
        "LEDGER_NATS_SUBJECT_PREFIX": prefix,
        "LEDGER_NATS_PUBLISH_TIMEOUT_SECONDS": "0.5",
    }
    window = "blocked-1"
    with (
        running_server(sqlite_url, publisher=nats_server.url, extra_env=env) as server,
        api(server) as client,
    ):
        try:
            assert admit(client, window, event("a"))["counts"] == {"ADMITTED": 1}
            nats_server.stop()  # SIGSTOP: the publishes time out, their outcome is unknown
            body = admit(client, window, event("u1"), event("u2"))
        finally:
            nats_server.cont()  # a stopped bus would hold the server's shutdown
        assert body["counts"] == {"PUBLISH_UNKNOWN": 2}, body
        unknown = {r["identity"] for r in body["results"]}
        read_side_caught_up(client, window)
        gate = eventually(
            lambda: client.get(f"/v1/windows/{window}/gate"),
            lambda r: r.json()["status"] == "BLOCKED",
        ).json()
        assert gate["status"] == "BLOCKED" and gate["reasons"], gate

        page.goto(f"{server.url}/windows/{window}")
        looked_at(page, shots, "window")
        assert page.locator("h1 [data-gate]").inner_text() == "BLOCKED"
        why = page.locator("section", has=page.get_by_role("heading", name="Why the gate says"))
        assert why.get_by_role("heading").inner_text() == "Why the gate says BLOCKED"
        assert texts(page, "section.reasons li") == gate["reasons"]
        pending = page.locator("tr[data-identity]")
        identities = pending.evaluate_all("rows => rows.map(r => r.dataset.identity)")
        assert sorted(identities) == sorted(unknown)
        assert len(identities) == 2
        for row in pending.all():
            age = row.locator("td").nth(4).inner_text()
            assert re.fullmatch(r"\d+ (s|min)", age), age
        assert int(page.locator('tr[data-count="pending_unknown"] td').inner_text()) == 2

        page.goto(server.url + "/")
        looked_at(page, shots, "windows")
        assert window_rows(page)[window]["gate"] == "BLOCKED"
        assert window_rows(page)[window]["counts"]["pending_unknown"] == 2


# --- 3. FAIL ----------------------------------------------------------------------------------


def test_verify_now_on_a_tampered_window_names_the_first_bad_version_and_the_window_says_why(
    page: Page, shots: Screenshots, sqlite_url: str, signing_key: str
) -> None:
    window = "sealed-1"
    with (
        running_server(sqlite_url, extra_env={"LEDGER_SIGNING_KEY": signing_key}) as server,
        api(server) as client,
    ):
        admit(client, window, *SEALED_ADMISSIONS)
        assert close(client, window)["gate"] == "PASS"
        read_side_caught_up(client, window)

        edit_admitted_payload_in_place(sqlite_url, window)  # version 2, digests left alone

        page.goto(f"{server.url}/windows/{window}")
        looked_at(page, shots, "window-before-verify")
        page.get_by_role("button", name="Verify now").click()
        page.wait_for_url(f"**/windows/{window}/verify*")
        looked_at(page, shots, "verify")
        verify = client.get(f"/v1/windows/{window}/verify").json()
        assert verify["ok"] is False and verify["first_bad_version"] == 2, verify
        assert page.locator('[data-field="ok"]').get_attribute("data-ok") == "false"
        assert "The history does not verify" in field(page, "ok")
        assert int(field(page, "first_bad_version")) == verify["first_bad_version"]

        page.get_by_role("link", name="Back to the window").click()
        page.wait_for_url(f"**/windows/{window}")
        looked_at(page, shots, "window-after-verify")
        gate = client.get(f"/v1/windows/{window}/gate").json()
        assert gate["status"] == "FAIL" and gate["reasons"], gate
        assert page.locator("h1 [data-gate]").inner_text() == "FAIL"
        assert texts(page, "section.reasons li") == gate["reasons"]
        assert "hash chain broken at version 2" in " ".join(gate["reasons"])


# --- 4. print ---------------------------------------------------------------------------------

PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")


def test_the_window_page_prints_as_one_a4_page_without_navigation_or_buttons(
    page: Page, shots: Screenshots, sqlite_url: str, signing_key: str
) -> None:
    with (
        running_server(sqlite_url, extra_env={"LEDGER_SIGNING_KEY": signing_key}) as server,
        api(server) as client,
    ):
        window = "printed-1"
        admit(client, window, *(order(i) for i in range(1, 41)))
        admit(client, window, order(1), order(2, amount_cents=7))
        close(client, window)
        read_side_caught_up(client, window)

        page.goto(f"{server.url}/windows/{window}")
        looked_at(page, shots, "window-screen")
        assert page.locator(".links").is_visible()
        assert page.get_by_role("button", name="Verify now").is_visible()

        page.emulate_media(media="print")
        looked_at(page, shots, "window-print")
        assert page.locator(".links").is_hidden()
        assert page.get_by_role("button", name="Verify now").is_hidden()
        assert page.locator("header nav").is_hidden()
        assert page.locator('[data-field="chain_head"]').is_visible()
        pdf = page.pdf(format="A4")
        (shots.folder / "window.pdf").write_bytes(pdf)
        assert len(PDF_PAGE.findall(pdf)) == 1

        # The count is of pages, not of anything: the long history prints on several.
        page.goto(f"{server.url}/windows/{window}/history")
        assert len(PDF_PAGE.findall(page.pdf(format="A4"))) > 1
