"""The admissions route's lean path (ADR 0047), through the app `ledger serve` serves, in this
process. The same request is sent twice: with a Content-Length, which the lean path may answer,
and chunked, which it never takes (so the route answers, as before the lean path): the two
answers must be the same, for admissions and for every kind of refusal. Whether the lean path
answered is told by the route's hook: it decodes every body the route sees (`decode_once`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from api import refusals
from service.composition import build_services
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.http import TOKENS, in_process

Sent = tuple[int, dict[str, str], Any]


@pytest.fixture(params=["open", "secured"])
def api(request: pytest.FixtureRequest, migrated: Settings) -> Iterator[TestClient]:
    """The service with auth off, and with LEDGER_API_TOKENS set (sending a token granting
    every scope)."""
    tokens = TOKENS if request.param == "secured" else ""
    with in_process(dataclasses.replace(migrated, api_tokens=tokens)) as client:
        if tokens:
            client.headers["authorization"] = "Bearer admin-token"
        yield client


@pytest.fixture
def route_decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies the route's own hook decoded: empty while the lean path answers."""
    seen: list[bytes] = []
    decode_once = refusals.decode_once

    def spy(request: Any, body: bytes) -> None:
        seen.append(body)
        decode_once(request, body)

    monkeypatch.setattr(refusals, "decode_once", spy)
    return seen


def post(client: TestClient, window: str, body: bytes, *, chunked: bool, **headers: str) -> Sent:
    # A generator is sent chunked (no Content-Length): the lean path leaves it to the route.
    content: Any = iter([body]) if chunked else body
    answer = client.post(
        f"/v1/windows/{window}/admissions",
        content=content,
        headers={"content-type": "application/json", **headers},
    )
    kept = {k: v for k, v in answer.headers.items() if k != "content-length"}
    try:
        data = answer.json()
    except json.JSONDecodeError:
        data = answer.text
    return answer.status_code, kept, data


def without_window(data: dict[str, Any]) -> dict[str, Any]:
    """An answer with what depends on the window's name (its id, the identities) left out."""
    results = [{k: v for k, v in r.items() if k != "identity"} for r in data["results"]]
    return {"results": results, "counts": data["counts"]}


def test_a_plain_admission_is_answered_by_the_lean_path_exactly_as_the_route_answers_it(
    api: TestClient, route_decodes: list[bytes]
) -> None:
    events = [event("e1"), event("e2", {"n": 2}), event("e1")]
    body = json.dumps({"events": events}).encode()

    lean = post(api, "w.lean", body, chunked=False)
    assert route_decodes == []  # the lean path answered
    routed = post(api, "w.routed", body, chunked=True)
    assert route_decodes == [body]  # the route answered

    assert lean[0] == routed[0] == 200
    assert lean[1] == routed[1]
    assert without_window(lean[2]) == without_window(routed[2])
    assert [r["verdict"] for r in lean[2]["results"]] == ["ADMITTED", "ADMITTED", "DUPLICATE"]
    assert lean[2]["window_id"] == "w.lean"
    # The same events again: duplicates now, on either path.
    again = post(api, "w.lean", body, chunked=False)
    assert [r["verdict"] for r in again[2]["results"]] == ["DUPLICATE"] * 3
    assert again[2]["results"][0]["offset"] == lean[2]["results"][0]["offset"]


BAD_BODIES: dict[str, bytes] = {
    "not JSON": b"{events: [",
    "empty object": b"{}",
    "no events": b'{"events": []}',
    "an unknown field": b'{"events": [], "extra": 1}',
    "a number as event_id": b'{"events": [{"event_type": "t", "event_id": 7, "payload": {}}]}',
    "a string where an object goes": b'{"events": "many"}',
    "nested too deep": b'{"events": [{"event_type": "t", "event_id": "e", "payload": '
    + b"[" * 80
    + b"]" * 80
    + b"}]}",
    "a NUL in an event id": b'{"events": [{"event_type": "t", "event_id": "a\\u0000", '
    b'"payload": {}}]}',
    "a negative source offset": b'{"events": [{"event_type": "t", "event_id": "e", '
    b'"payload": {}, "source": {"partition": "p", "offset": -1}}]}',
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_every_refusal_met_on_the_lean_path_is_the_routes_own_answer(
    api: TestClient, route_decodes: list[bytes], case: str
) -> None:
    body = BAD_BODIES[case]
    lean = post(api, "w.bad", body, chunked=False)
    routed = post(api, "w.bad", body, chunked=True)
    assert lean == routed
    assert 400 <= lean[0] < 500, lean
    assert lean[2]["error"], lean
    assert not api.get("/v1/windows/w.bad").is_success  # nothing was recorded


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer no-such-token", 401), ("Bearer reader-token", 403)],
)
def test_a_token_that_does_not_grant_admit_is_refused_by_the_route_on_either_path(
    migrated: Settings, route_decodes: list[bytes], authorization: str | None, status: int
) -> None:
    body = json.dumps({"events": [event("e1")]}).encode()
    headers = {"authorization": authorization} if authorization else {}
    with in_process(dataclasses.replace(migrated, api_tokens=TOKENS)) as secured:
        lean = post(secured, "w.token", body, chunked=False, **headers)
        routed = post(secured, "w.token", body, chunked=True, **headers)
        assert lean == routed
        assert lean[0] == status
        granted = post(secured, "w.token", body, chunked=False, authorization="Bearer admitter")
        assert granted[0] == 200
    assert route_decodes == []  # refused before its body was looked at, then lean


def test_an_admission_into_a_closed_window_is_the_routes_409_and_its_duplicate_still_200(
    api: TestClient,
) -> None:
    body = json.dumps({"events": [event("e1")]}).encode()
    assert post(api, "w.closed", body, chunked=False)[0] == 200
    assert api.post("/v1/windows/w.closed/close").status_code == 200
    new = json.dumps({"events": [event("e2")]}).encode()
    lean = post(api, "w.closed", new, chunked=False)
    routed = post(api, "w.closed", new, chunked=True)
    assert lean == routed
    assert lean[0] == 409
    assert lean[2]["error"] == "window_closed"
    duplicate = post(api, "w.closed", body, chunked=False)
    assert duplicate[0] == 200
    assert duplicate[2]["results"][0]["verdict"] == "DUPLICATE"


def test_a_write_that_fails_after_the_lean_path_handed_it_over_is_answered_by_the_routes_handlers(
    postgres_url: str, signing_key: str, route_decodes: list[bytes]
) -> None:
    """A writer stuck behind another session's lock: the request is withdrawn at its deadline
    on the lean path, and the route's exception handlers answer it (503, Retry-After), without
    a second write."""
    settings = Settings(
        database_url=postgres_url, signing_key=signing_key, request_timeout_seconds=1.0
    )
    services = build_services(settings)
    try:
        services.admit("w.before", batch("w.before", event("e0")))  # the tables exist
        with (
            in_process(settings, services) as client,
            psycopg.connect(postgres_url) as lock,
        ):
            lock.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
            body = json.dumps({"events": [event("e1")]}).encode()
            status, headers, data = post(client, "w.stuck", body, chunked=False)
            lock.rollback()
            assert status == 503, data
            assert data["error"] == "storage_unavailable"
            assert headers["retry-after"] == "1"
            # Answered by the route's hook raising the lean path's failure, not by the route
            # taking the request anew (it would have decoded the body).
            assert route_decodes == []
            assert not services.ledger.has_window("w.stuck")  # nothing recorded
            again = post(client, "w.stuck", body, chunked=False)
            assert again[0] == 200
            assert again[2]["results"][0]["verdict"] == "ADMITTED"
    finally:
        services.close()
