"""The identity and payload hash an admission returns and records are the ones a client computes
on its own (rfc8785 + hashlib), on each backend."""

from __future__ import annotations

from ledger.application import Ledger
from tests.support.builders import batch, event
from tests.support.client import client_identity, client_payload_hash


def test_admit_returns_the_identity_and_hash_a_client_computes(ledger: Ledger) -> None:
    payloads = [{"id": "1", "b": 2, "a": 1}, {"\U0001f600": "smile", "x": [1.5, None]}]
    results = ledger.admit(
        "w-ident",
        batch("w-ident", event("1", payloads[0]), event("2", payloads[1])),
    )
    for result, event_id, payload in zip(results, ["1", "2"], payloads, strict=True):
        assert result.identity == client_identity("w-ident", "order.created", event_id)
        assert result.payload_hash == client_payload_hash(payload)
        assert result.as_json()["identity"] == result.identity
        assert result.as_json()["payload_hash"] == result.payload_hash


def test_the_recorded_event_carries_the_same_identity_and_hash(ledger: Ledger) -> None:
    payload = {"z": 1, "a": [True, False]}
    ledger.admit("w-rec", batch("w-rec", event("1", payload)))
    admitted = [h for h in ledger.history("w-rec") if h["type"] == "EventAdmitted"]
    assert len(admitted) == 1
    fields = admitted[0]["fields"]
    assert fields["identity"] == client_identity("w-rec", "order.created", "1")
    assert fields["payload_hash"] == client_payload_hash(payload)
    assert fields["payload"] == payload
