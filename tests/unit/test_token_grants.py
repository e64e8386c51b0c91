"""`TokenAuth.grants`: the lean admissions path's token check on raw ASGI headers (ADR 0047).
It may only ever say yes where the route's own check (`TokenAuth.check`) lets the request
through; every other request goes to the route, which refuses it in its own words."""

from __future__ import annotations

import pytest

from api.auth import TokenAuth
from service.tokens import parse_tokens

AUTH = TokenAuth(parse_tokens("writer=admit,reader=read,both=admit+read"))


def headers(*authorization: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"x"), *((b"authorization", value) for value in authorization)]


@pytest.mark.parametrize("value", [b"Bearer writer", b"bearer both", b"BEARER  writer "])
def test_a_bearer_token_with_the_scope_is_granted(value: bytes) -> None:
    assert AUTH.grants(headers(value), "admit")


@pytest.mark.parametrize(
    "given",
    [
        headers(),
        headers(b"Bearer reader"),
        headers(b"Bearer nobody"),
        headers(b"Basic writer"),
        headers(b"writer"),
        headers(b""),
        headers(b"Bearer writer", b"Bearer writer"),
        headers(b"Bearer reader", b"Bearer writer"),
    ],
)
def test_a_missing_unknown_unscoped_or_repeated_token_is_left_to_the_route(
    given: list[tuple[bytes, bytes]],
) -> None:
    assert not AUTH.grants(given, "admit")


def test_with_auth_off_every_request_is_granted() -> None:
    assert TokenAuth({}).grants(headers(), "admit")
