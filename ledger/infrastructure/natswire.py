"""The bus's wire format: the admission message body, the JetStream ack, the subject token."""

from __future__ import annotations

from typing import Any

import msgspec

from ledger.ports import BusMessage, OutgoingMessage


class Ack(msgspec.Struct):
    stream: str | None = None
    seq: int | None = None
    duplicate: bool = False
    error: dict[str, Any] | None = None


decode_ack = msgspec.json.Decoder(Ack).decode


class Body(msgspec.Struct):
    window_id: str
    identity: str
    event_type: str
    event_id: str
    payload: dict[str, Any]
    payload_hash: str


encode = msgspec.json.Encoder().encode
decode_body = msgspec.json.Decoder(Body).decode


def subject_token(window_id: str) -> str:
    # A window id may hold '.', which would split the subject into tokens (or make an empty
    # one); '~' never occurs in a window id, so this mapping is one-to-one.
    return window_id.replace(".", "~")


def bus_message(seq: int, body: Body) -> BusMessage:
    return BusMessage(
        seq,
        body.identity,
        OutgoingMessage(
            body.window_id,
            body.identity,
            body.event_type,
            body.event_id,
            body.payload,
            body.payload_hash,
        ),
    )
