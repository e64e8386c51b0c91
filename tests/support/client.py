"""What any client computes on its own, with rfc8785 and hashlib and nothing of the ledger's:
identities, payload hashes and the hash chain of a window's history (contract s.2)."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

GENESIS = "0" * 64


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def client_identity(window_id: str, event_type: str, event_id: str) -> str:
    return sha256_hex(rfc8785.dumps([window_id, event_type, event_id]))


def client_payload_hash(payload: Any) -> str:
    return sha256_hex(rfc8785.dumps(payload))


def client_digest(item: dict[str, Any]) -> str:
    """The digest of one history item, recomputed from its own prev_digest and fields."""
    body = {k: item[k] for k in ("version", "type", "recorded_at", "fields")}
    return sha256_hex(item["prev_digest"].encode("utf-8") + rfc8785.dumps(body))


def recompute_chain(history: list[dict[str, Any]]) -> str:
    """What a reviewer does with the history alone: every link checked, the head returned."""
    head = GENESIS
    for version, item in enumerate(history, start=1):
        assert item["version"] == version
        assert item["prev_digest"] == head
        head = client_digest(item)
        assert item["digest"] == head, f"digest of version {version} does not recompute"
    return head
