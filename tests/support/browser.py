"""A real browser for the reviewer's pages: Debian's Chromium, headless, driven by Playwright;
axe-core (shipped inside axe-playwright-python) to find WCAG 2.1 A/AA violations on a page; and
numbered screenshots in the test's own output folder.

    with chromium() as browser:
        page = browser.new_page()
        page.goto(url)
        assert axe_violations(page) == []
        shots.take(page, "windows")        # test-output/<test>/01-windows.png

Chromium only ever talks to 127.0.0.1 here: no sync, no component updates, no background fetches.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from tests.support import ROOT
from tests.support.services import missing_service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1200, "height": 900}
OUTPUT = ROOT / "test-output"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium, closed afterwards; missing Chromium is a missing service (a failure
    under CI=true, a loud skip otherwise)."""
    if not Path(CHROMIUM).exists():
        missing_service("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


# --- accessibility ----------------------------------------------------------------------------


def _axe_source() -> str:
    return (importlib.resources.files("axe_playwright_python") / "axe.min.js").read_text()


def axe_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.0/2.1 A and AA violations on the page as it is now (closed <details>
    opened), one readable line each (rule id, impact, what it asks, the failing elements), so
    `assert axe_violations(page) == []` shows them. For HTML pages: a JSON or text/plain answer
    is Chromium's own viewer document (no lang, no title), not a page of ours."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=_axe_source())
    # Closed <details> are opened for the run (and closed again): what they hide counts too.
    result: dict[str, Any] = page.evaluate(
        """async (tags) => {
            const closed = [...document.querySelectorAll("details:not([open])")];
            closed.forEach(d => { d.open = true; });
            try {
                return await axe.run(document, {runOnly: {type: "tag", values: tags}});
            } finally {
                closed.forEach(d => { d.open = false; });
            }
        }""",
        WCAG_TAGS,
    )
    found = []
    for violation in result["violations"]:
        targets = [" ".join(map(str, node["target"])) for node in violation["nodes"]]
        more = f" (+{len(targets) - 5} more)" if len(targets) > 5 else ""
        shown = ", ".join(targets[:5]) + more
        found.append(
            f"{violation['id']} [{violation['impact']}] {violation['help']}: {shown} on {page.url}"
        )
    return found


# --- screenshots --------------------------------------------------------------------------------


class Screenshots:
    """Numbered full-page screenshots in test-output/<name>/, emptied when made."""

    def __init__(self, name: str, root: Path = OUTPUT) -> None:
        self.folder = root / re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.taken: dict[str, Path] = {}

    def take(self, page: Page, name: str) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken[name] = path
        return path
