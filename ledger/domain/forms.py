"""The canonical form of an `EventAdmitted` made ahead of its offset, so the chain digest of an
admission costs no canonicalization on the write path (see `Window.admit`)."""

from __future__ import annotations

from typing import Any, NamedTuple

from ledger.jcs import canonical_string, canonicalize


class AdmittedForm(NamedTuple):
    """The canonical fields of an `EventAdmitted` made before its offset is known: they are
    `head + offset + tail`. Made ahead (while the index is read), the chain digest of the
    admission costs no canonicalization on the write path."""

    head: bytes
    tail: bytes


def admitted_form(
    *,
    identity: str,
    event_type: str,
    event_id: str,
    payload_hash: str,
    source: dict[str, Any] | None,
    canonical_payload: bytes,
) -> AdmittedForm:
    """The canonical fields of the `EventAdmitted` these values would make, around its
    offset (see `AdmittedForm`). Raises `CanonicalizationError` as `admit` would.

    Written out directly: the field names are fixed and already in RFC 8785 order
    (event_id, event_type, identity, offset, payload, payload_hash, source), and every
    value is a string, the payload's canonical bytes or the source (the tests hold this
    to `canonicalize` and to the `rfc8785` package)."""
    head = b"".join(
        (
            b'{"event_id":',
            canonical_string(event_id),
            b',"event_type":',
            canonical_string(event_type),
            b',"identity":',
            canonical_string(identity),
            b',"offset":',
        )
    )
    tail = b"".join(
        (
            b',"payload":',
            canonical_payload,
            b',"payload_hash":',
            canonical_string(payload_hash),
            b',"source":',
            b"null" if source is None else canonicalize(source),
            b"}",
        )
    )
    return AdmittedForm(head, tail)
