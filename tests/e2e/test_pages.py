"""The reviewer's pages through the app `ledger serve` serves (in-process client, both
backends): what each page answers, its links, its paging, its escaping, and the `read` scope.
What a person sees in a browser (layout, badges, keyboard, accessibility, print):
tests/e2e/test_pages_browser.py."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from litestar.testing import TestClient

from service.settings import Settings
from tests.support.builders import event
from tests.support.http import (
    TOKENS,
    admit,
    as_token,
    assert_error,
    barrier,
    close,
    in_process,
)

PAGES = ("", "/quarantine", "/history", "/verify", "/receipt.md")


@pytest.fixture
def api(migrated: Settings) -> Iterator[TestClient]:
    with in_process(migrated) as client:
        yield client


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href and not href.startswith("#"):
            self.links.append(href)


def links(page: str) -> list[str]:
    parser = _Links()
    parser.feed(page)
    return parser.links


def html(api: TestClient, path: str) -> str:
    response = api.get(path)
    assert response.status_code == 200, (path, response.text[:300])
    assert response.headers["content-type"].startswith("text/html"), path
    return response.text


def test_the_windows_page_lists_every_window_and_links_to_its_page_quarantine_and_history(api):
    admit(api, "alpha", event("a"), event("a", {"changed": 1}))
    admit(api, "beta:2", event("b"))
    close(api, "alpha")
    barrier(api, "zz-marker")
    page = html(api, "/")
    found = links(page)
    for quoted in ("alpha", "beta%3A2", "zz-marker"):
        for suffix in ("", "/quarantine", "/history"):
            assert f"/windows/{quoted}{suffix}" in found, (quoted, suffix)
    for link in found:
        assert api.get(link).status_code == 200, link
    assert re.search(r'data-window="alpha".*?data-gate="PASS"', page, flags=re.S)
    assert re.search(r'data-window="beta:2".*?data-gate="OPEN"', page, flags=re.S)

    only_pass = html(api, "/?gate=PASS")
    assert 'data-window="alpha"' in only_pass and 'data-window="beta:2"' not in only_pass
    searched = html(api, "/?q=beta")
    assert 'data-window="beta:2"' in searched and 'data-window="alpha"' not in searched
    # An unknown gate is no filter at all, not an error.
    assert 'data-window="beta:2"' in html(api, "/?gate=MAYBE")
    assert "No window matches these filters." in html(api, "/?q=nothing-like-this")


def test_the_windows_page_pages_by_window_id_keeping_its_filters(api):
    for i in range(53):
        admit(api, f"w-{i:03d}", event("a"))
    barrier(api, "w-zzz")
    first = html(api, "/?q=w-")
    rows = re.findall(r'data-window="([^"]+)"', first)
    assert rows == [f"w-{i:03d}" for i in range(50)]
    (next_link,) = [link for link in links(first) if "after=" in link]
    assert "q=w-" in next_link and "after=w-049" in next_link
    second = html(api, next_link.replace("&amp;", "&"))
    assert re.findall(r'data-window="([^"]+)"', second) == ["w-050", "w-051", "w-052", "w-zzz"]


def test_a_window_page_shows_its_receipt_its_signature_and_links_to_its_evidence(api):
    admit(api, "w", event("a", source={"partition": "p7", "offset": 41}), event("a"))
    receipt = close(api, "w")
    page = html(api, "/windows/w")
    assert 'data-gate="PASS"' in page
    assert receipt["chain_head"] in page
    assert receipt["closed_at"] in page
    assert receipt["signature"]["key_id"] in page and receipt["signature"]["value"] in page
    assert f'data-field="events">{receipt["events"]}<' in page
    assert "p7" in page and "41" in page
    assert "/v1/windows/w/admitted" in links(page)  # PASS: downstream may read it
    for link in links(page):
        assert api.get(link).status_code == 200, link


def test_an_open_window_page_offers_no_admitted_events_and_says_it_is_unsigned(api):
    admit(api, "w", event("a"))
    barrier(api, "w")
    page = html(api, "/windows/w")
    assert 'data-gate="OPEN"' in page
    assert "/v1/windows/w/admitted" not in links(page)
    assert "none yet: the receipt is signed at close" in page
    assert "Pending unknown identities (0)" in page


def test_history_pages_go_forward_and_back_fifty_events_at_a_time(api):
    admit(api, "w", *(event(str(i)) for i in range(120)))
    close(api, "w")  # 1 WindowOpened + 120 admitted + WindowClosed = 122 events
    first = html(api, "/windows/w/history")
    assert re.findall(r'data-version="(\d+)"', first) == [str(v) for v in range(1, 51)]
    assert "/windows/w/history?after=50" in links(first)
    assert "/windows/w/history?after=72" in links(first)  # the last page
    middle = html(api, "/windows/w/history?after=50")
    assert re.findall(r'data-version="(\d+)"', middle) == [str(v) for v in range(51, 101)]
    assert "/windows/w/history?after=0" in links(middle)  # previous
    last = html(api, "/windows/w/history?after=100")
    assert re.findall(r'data-version="(\d+)"', last)[-1] == "122"
    assert "WindowClosed" in last and "/windows/w/history?after=150" not in links(last)
    for link in links(last):
        if link.startswith("/v1/windows/w/history"):
            one = api.get(link.replace("&amp;", "&")).json()["items"]
            assert len(one) == 1


def test_a_quarantined_payload_is_shown_escaped_beside_the_original(api):
    admit(api, "w", event("a", {"note": "fine", "n": 1}))
    admit(api, "w", event("a", {"note": "<script>alert(1)</script>", "n": 1}))
    barrier(api, "w")
    page = html(api, "/windows/w/quarantine")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    marked = re.findall(r'<mark class="changed">(.*?)</mark>', page, flags=re.S)
    assert len(marked) == 2 and all("note" in m for m in marked)
    assert not any('"n"' in m for m in marked)


def test_the_verify_page_runs_verify_and_the_markdown_receipt_is_plain_text(api):
    admit(api, "w", event("a"))
    receipt = close(api, "w")
    page = html(api, "/windows/w/verify")
    assert 'data-ok="true"' in page and receipt["chain_head"] in page
    markdown = api.get("/windows/w/receipt.md")
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/plain")
    assert "w" in markdown.text and receipt["chain_head"] in markdown.text


@pytest.mark.parametrize("suffix", PAGES)
def test_every_page_of_an_unknown_window_answers_404_json(api, suffix):
    response = api.get(f"/windows/no-such-window{suffix}")
    assert_error(response, 404, "window_not_found")


@pytest.mark.parametrize("suffix", PAGES)
def test_a_window_id_outside_the_contract_answers_400_json(api, suffix):
    response = api.get(f"/windows/bad%20id{suffix}")
    assert response.status_code == 400, response.text
    assert response.json()["error"]


@pytest.mark.parametrize("path", ["/windows/w/history?after=-1", "/windows/w/quarantine?after=x"])
def test_a_bad_page_cursor_answers_400(api, path):
    admit(api, "w", event("a"))
    assert api.get(path).status_code == 400


def test_with_tokens_set_the_pages_need_the_read_scope(migrated):
    with in_process(dataclasses.replace(migrated, api_tokens=TOKENS)) as secured:
        admin = as_token(secured, "admin-token")
        admit(admin, "w", event("a"))
        barrier(admin, "w")
        for path in ("/", "/windows/w", "/windows/w/history", "/windows/w/quarantine"):
            assert as_token(secured, None).get(path).status_code == 401, path
            assert as_token(secured, "admitter").get(path).status_code == 403, path
            assert as_token(secured, "reader-token").get(path).status_code == 200, path
