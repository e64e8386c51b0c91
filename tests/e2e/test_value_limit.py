"""A request's JSON values are bounded (ADR 0029): decoding costs memory by value, not by byte,
so a body of more than 1,200,000 values (brackets, braces, commas and colons outside strings)
is refused 413 naming the limit before it is decoded, and records nothing; one just under is
admitted; brackets inside strings are not values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from service.settings import Settings
from tests.support.builders import event
from tests.support.http import in_process

# The documented limit, written out: a test of the limit does not read it from the code.
LIMIT = 1_200_000
EVENTS = 20

Client = TestClient[Litestar]


@pytest.fixture
def api(migrated: Settings) -> Iterator[Client]:
    with in_process(migrated) as client:
        yield client


def body_of(numbers_per_event: int, payload_extra: dict[str, Any] | None = None) -> bytes:
    """EVENTS events, each payload an array of zeros: a value a zero (the comma after it)."""
    events = [
        event(f"e{i}", {"v": [0] * numbers_per_event, **(payload_extra or {})})
        for i in range(EVENTS)
    ]
    return json.dumps({"events": events}, separators=(",", ":")).encode()


def post(api: Client, window: str, body: bytes) -> Any:
    return api.post(
        f"/v1/windows/{window}/admissions",
        content=body,
        headers={"content-type": "application/json"},
    )


def test_a_body_of_more_values_than_the_limit_is_refused_413_and_records_nothing(
    api: Client,
) -> None:
    answer = post(api, "w.values-over", body_of(LIMIT // EVENTS + 10))
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "payload_too_large"
    assert "1,200,000" in answer.json()["detail"]
    assert api.get("/v1/windows/w.values-over").status_code == 404


def test_a_body_just_under_the_value_limit_is_admitted(api: Client) -> None:
    answer = post(api, "w.values-under", body_of(LIMIT // EVENTS - 200))
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["counts"] == {"ADMITTED": EVENTS}


def test_commas_and_brackets_inside_strings_are_not_counted_as_values(api: Client) -> None:
    text = "[,{:" * (LIMIT // EVENTS // 3)  # over the limit if the counter read strings
    answer = post(api, "w.values-strings", body_of(1, {"text": text}))
    assert answer.status_code == 200, answer.text[:300]
