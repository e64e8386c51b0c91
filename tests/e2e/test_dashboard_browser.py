"""The reviewer dashboard in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.http import admit, close
from tests.support.server import running_server
from tests.support.services import missing_service, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        missing_service("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_a_reviewer_sees_every_window_with_its_gate_and_follows_the_links(
    browser, tmp_path: Path
) -> None:
    with running_server(f"sqlite:///{tmp_path / 'ledger.db'}") as server:
        order = {"event_type": "order.created", "event_id": "o-1", "payload": {"cents": 100}}
        changed = {**order, "payload": {"cents": 999}}
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            admit(client, "closed-window", order, order, changed)
            close(client, "closed-window")
            admit(client, "open-window", order)
            # Reads are eventually consistent: wait (bounded) until the read side has the window.
            wait_until(
                lambda: client.get("/v1/windows/open-window").status_code == 200,
                5,
                "window open-window to reach the read side",
            )

        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(server.url + "/")
        rows = page.locator("tbody tr")
        rows.first.wait_for()
        assert rows.count() == 2
        closed_row = page.locator("tr", has_text="closed-window")
        assert closed_row.locator(".gate").inner_text() == "PASS"
        assert page.locator("tr", has_text="open-window").locator(".gate").inner_text() == "OPEN"

        closed_row.get_by_role("link", name="closed-window").click()
        page.wait_for_url("**/windows/closed-window")
        assert "Window closed-window" in page.locator("h1").inner_text()
        body = page.locator("body").inner_text()
        assert "Quarantined (same identity, different payload)\t1" in body
        assert "Exact duplicates absorbed\t1" in body

        page.get_by_role("link", name="quarantine").click()
        page.wait_for_url("**/v1/quarantine?window_id=closed-window")
        assert '"occurrences":1' in page.locator("body").inner_text().replace(" ", "")

        page.go_back()
        page.get_by_role("link", name="history").click()
        page.wait_for_url("**/v1/windows/closed-window/history")
        assert '"type":"WindowClosed"' in page.locator("body").inner_text().replace(" ", "")
        page.screenshot(path=str(tmp_path / "dashboard.png"))
