"""The hash chain of a window's events (contract s.2): digests and the recorded-time format.

Standard library only (and the stdlib-only JCS module).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any

from ledger.jcs import canonicalize

GENESIS_DIGEST = "0" * 64
_ZERO = timedelta(0)

# Event attributes that are bookkeeping, not the event's own data ("fields" in the contract).
META_KEYS = frozenset(
    {
        "originator_id",
        "originator_version",
        "timestamp",
        "prev_digest",
        "digest",
        "originator_topic",
        "class_version",
    }
)


def format_recorded_at(timestamp: datetime) -> str:
    """YYYY-MM-DDTHH:MM:SS.ffffffZ, always with microseconds."""
    utc = timestamp if timestamp.utcoffset() == _ZERO else timestamp.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def chain_digest(
    prev_digest: str, version: int, type_name: str, recorded_at: str, fields: dict[str, Any]
) -> str:
    """digest = sha256(prev_digest + JCS({version, type, recorded_at, fields})) (contract s.2).

    The envelope is written by hand around the canonical fields: its keys are already in
    RFC 8785 order, and `recorded_at` and `type` are ASCII text that needs no escaping (the
    tests hold this to the `rfc8785` package). `fields` may hold `Canonical` leaves.
    """
    return chain_digest_of(prev_digest, version, type_name, recorded_at, canonicalize(fields))


def chain_digest_of(
    prev_digest: str, version: int, type_name: str, recorded_at: str, canonical_fields: bytes
) -> str:
    """`chain_digest` with the fields given by their canonical bytes."""
    digest = sha256(f'{prev_digest}{{"fields":'.encode("ascii"))
    digest.update(canonical_fields)
    digest.update(
        f',"recorded_at":"{recorded_at}","type":"{type_name}","version":{version}}}'.encode("ascii")
    )
    return digest.hexdigest()
