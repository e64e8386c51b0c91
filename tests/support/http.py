"""Talking to the HTTP contract as a client does: the in-process app, tokens, and the calls and
checks the API tests repeat (admit, close, paging, error bodies, waiting for the read side).

`in_process(settings)` serves the app `ledger serve` serves (`api.app.create_app`) in this
process through Litestar's test client: httpx's interface, the app's lifespan (the read side
follows the log), no socket and no subprocess. Every helper takes any client with httpx's
`.get/.post/.request`: the in-process one, `Authorized`, or an httpx.Client on a real server.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from litestar.testing import TestClient

from api.app import create_app
from service.composition import Services
from service.settings import Settings
from tests.support.builders import event

TOKENS = "admin-token=admit+operate+read,reader-token=read,admitter=admit"
UNKNOWN_TOKEN = "no-such-token-3f9c1e"
READ_SIDE_TIMEOUT = 20.0


@contextlib.contextmanager
def in_process(settings: Settings, services: Services | None = None) -> Iterator[TestClient]:
    """The service on these settings (or around these services), started and stopped with the
    block. Server errors come back as 5xx answers, as from a real server."""
    app = create_app(settings, services)
    with TestClient(app, raise_server_exceptions=False, timeout=60.0) as client:
        yield client


class Authorized:
    """A client that sends one Authorization header value (None: none) with every request."""

    def __init__(self, client: Any, authorization: str | None) -> None:
        self.client = client
        self.authorization = authorization

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        response: httpx.Response = self.client.request(method, url, headers=headers, **kwargs)
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def __enter__(self) -> Authorized:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def as_token(client: Any, token: str | None) -> Authorized:
    """The client sending `Authorization: Bearer TOKEN` (no header at all for None)."""
    return Authorized(client, f"Bearer {token}" if token is not None else None)


def token_calls(window_id: str) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(scope needed, method, path, body) for every endpoint that needs a token."""
    return [
        ("admit", "POST", f"/v1/windows/{window_id}/admissions", {"events": [event("x")]}),
        ("operate", "POST", f"/v1/windows/{window_id}/close", None),
        ("operate", "POST", f"/v1/windows/{window_id}/reconcile", None),
        ("operate", "POST", f"/v1/windows/{window_id}/bus-duplicates/accept", None),
        ("read", "GET", "/v1/windows", None),
        ("read", "GET", f"/v1/windows/{window_id}", None),
        ("read", "GET", f"/v1/windows/{window_id}/receipt", None),
        ("read", "GET", f"/v1/windows/{window_id}/gate", None),
        ("read", "GET", f"/v1/windows/{window_id}/admitted", None),
        ("read", "GET", f"/v1/windows/{window_id}/history", None),
        ("read", "GET", f"/v1/windows/{window_id}/verify", None),
        ("read", "GET", "/v1/quarantine", None),
        ("read", "GET", "/", None),
        ("read", "GET", f"/windows/{window_id}", None),
        ("read", "GET", "/metrics", None),
    ]


def admit(api: Any, window_id: str, *events: dict[str, Any]) -> dict[str, Any]:
    response = api.post(f"/v1/windows/{window_id}/admissions", json={"events": list(events)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def close(api: Any, window_id: str) -> dict[str, Any]:
    response = api.post(f"/v1/windows/{window_id}/close")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def follow_pages(
    api: Any, path: str, *, limit: int, params: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Every item of a paged list, following `next` as `after`; also how many pages it took."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    pages = 0
    while True:
        query = {**(params or {}), "limit": limit}
        if after is not None:
            query["after"] = after
        response = api.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next"}, page
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        pages += 1
        assert pages <= 1000, "paging never ends"
        if page["next"] is None:
            return items, pages
        assert isinstance(page["next"], str)
        after = page["next"]


def history(api: Any, window_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    return follow_pages(api, f"/v1/windows/{window_id}/history", limit=limit)[0]


def eventually(
    fetch: Callable[[], httpx.Response],
    until: Callable[[httpx.Response], bool],
    timeout: float = READ_SIDE_TIMEOUT,
) -> httpx.Response:
    """The first answer that satisfies `until`, or the last one after `timeout` (bounded)."""
    deadline = time.monotonic() + timeout
    response = fetch()
    while not until(response) and time.monotonic() < deadline:
        time.sleep(0.1)
        response = fetch()
    return response


def read_side_caught_up(api: Any, window_id: str) -> dict[str, Any]:
    """Wait until the window's summary counts every event of its history; return the summary."""
    events = len(history(api, window_id))
    response = eventually(
        lambda: api.get(f"/v1/windows/{window_id}"),
        lambda r: r.status_code == 200 and r.json()["events"] == events,
    )
    assert response.status_code == 200, response.text
    assert response.json()["events"] == events, "the read side never caught up"
    summary: dict[str, Any] = response.json()
    return summary


def assert_error(
    response: httpx.Response, status: int, code: str | None = None, *, context: str = ""
) -> dict[str, Any]:
    """The response is the contract's error: this status, a JSON body with `error` and `detail`
    (and this error code, when given)."""
    request = f"{response.request.method} {response.request.url.raw_path.decode()[:200]}"
    assert response.status_code == status, (
        f"{context}: {request} answered {response.status_code}, not {status}: {response.text[:500]}"
    )
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if code is not None:
        assert body["error"] == code, body
    return body


def barrier(api: Any, marker: str) -> list[str]:
    """Admit to a fresh marker window and wait until the windows list shows it: the read side
    has then applied everything recorded before. Returns the window ids it lists."""
    admit(api, marker, event("marker"))
    response = eventually(
        lambda: api.get("/v1/windows", params={"limit": 1000}),
        lambda r: marker in [w["window_id"] for w in r.json()["items"]],
    )
    listed = [w["window_id"] for w in response.json()["items"]]
    assert marker in listed, "the read side never caught up"
    return listed


def api_gate(client: Any, window_id: str) -> str:
    response = eventually(
        lambda: client.get(f"/v1/windows/{window_id}/gate"), lambda r: r.status_code == 200
    )
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status
