"""Identity and payload hash, recomputed the way any client would: rfc8785 + hashlib."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ledger.admissions import AdmissionIn, identity_of, prepare
from tests.support.builders import batch, event
from tests.support.client import client_identity, client_payload_hash

CASES = [
    ("w-1", "order.created", "1", {"id": "1"}),
    ("run:2024-01-01", "order.shipped", 'a/b"c\\d', {"amount": 12.5, "qty": 3, "ok": True}),
    ("W_2.x", "t", "\U0001f600 emoji id", {"\ue000": 1, "\U0001f600": [None, 1e21, -0.0]}),
    ("w", "t", "x" * 256, {"nested": {"z": [1, 2, {"y": "\u0007"}], "a": {}}}),
    ("w", "t", "caf\u00e9", {}),
]


@pytest.mark.parametrize(("window_id", "event_type", "event_id", "payload"), CASES)
def test_prepare_returns_the_identity_and_hash_a_client_computes_independently(
    window_id: str, event_type: str, event_id: str, payload: dict[str, Any]
) -> None:
    (a,) = prepare(
        window_id,
        [
            msgspec.convert(
                {"event_type": event_type, "event_id": event_id, "payload": payload}, AdmissionIn
            )
        ],
    )
    assert a.identity == client_identity(window_id, event_type, event_id)
    assert a.payload_hash == client_payload_hash(payload)
    assert identity_of(window_id, event_type, event_id) == a.identity


def test_identity_and_hash_are_64_lowercase_hex_characters() -> None:
    (a,) = batch("w", event("1", {"k": "V"}))
    for digest in (a.identity, a.payload_hash):
        assert len(digest) == 64
        assert digest == digest.lower()
        int(digest, 16)


def test_identity_differs_when_any_of_its_three_parts_differs() -> None:
    base = identity_of("w", "t", "1")
    assert identity_of("w2", "t", "1") != base
    assert identity_of("w", "t2", "1") != base
    assert identity_of("w", "t", "2") != base
    # No ambiguity from concatenation: the parts are a JSON array.
    assert identity_of("ab", "c", "d") != identity_of("a", "bc", "d")


def test_the_payload_hash_does_not_depend_on_the_key_order_of_the_payload() -> None:
    forward = {"a": 1, "b": {"x": [1, 2], "y": "z"}, "\U0001f600": 2, "\ue000": 3}
    backward = {"\ue000": 3, "\U0001f600": 2, "b": {"y": "z", "x": [1, 2]}, "a": 1}
    (first,) = batch("w", event("1", forward))
    (second,) = batch("w", event("1", backward))
    assert first.payload_hash == second.payload_hash == client_payload_hash(forward)
    assert first.identity == second.identity


def test_a_payload_change_changes_the_hash_but_not_the_identity() -> None:
    (first,) = batch("w", event("1", {"amount": 1}))
    (second,) = batch("w", event("1", {"amount": 2}))
    assert first.identity == second.identity
    assert first.payload_hash != second.payload_hash


def test_the_integer_one_and_the_float_one_hash_the_same_as_in_json() -> None:
    # JSON has one number type: 1 and 1.0 are the same JSON value and the same canonical text.
    (as_int,) = batch("w", event("1", {"n": 1}))
    (as_float,) = batch("w", event("1", {"n": 1.0}))
    assert as_int.payload_hash == as_float.payload_hash == client_payload_hash({"n": 1})
